"""
What a worker stream session sends, in the order it was queued, and the one writer that hands it to
the stream. Everything here runs on the worker's event loop thread.

States:
  open      put() queues a message; the writer hands what is queued to the stream as it can. Once the
            welcome says the server takes batches (`batching`), what is queued when the writer gets to
            run goes out as one WorkerMessage.batch, at most MAX_BATCH_MESSAGES messages and BATCH_BYTES
            by bytes_bound (the limits of protocol/batching.ts)
  closed    close(): what is queued still goes, then the writer half-closes the stream; discard(): the
            stream has ended and what is queued is dropped. put() is refused (the caller checks `closed`)

`written` is set whenever nothing queued is left to hand to the stream.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ._gen import worker_pb2

MAX_BATCH_MESSAGES = 1000
BATCH_BYTES = 1024 * 1024


def bytes_bound(json_length: int, text_length: int) -> int:
    """An upper bound of a message's encoded size from the characters of JSON and of other text it carries."""
    return 128 + 6 * json_length + 3 * text_length


class Outbox:
    def __init__(self, on_write: Callable[[list[worker_pb2.WorkerMessage]], None]) -> None:
        """`on_write(messages)` hears each message just before it is handed to the stream."""
        self._on_write = on_write
        self._queued: deque[tuple[worker_pb2.WorkerMessage, int]] = deque()
        self._closed = False
        self._ready = asyncio.Event()
        self.written = asyncio.Event()
        self.written.set()
        self.batching = False

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, message: worker_pb2.WorkerMessage, size: int) -> None:
        """Queues a message (open only); `size` bounds its encoded size (bytes_bound)."""
        self._queued.append((message, size))
        self.written.clear()
        self._ready.set()

    def close(self) -> None:
        """Send what is queued, then half-close the stream."""
        self._closed = True
        self._ready.set()

    def discard(self) -> None:
        """The stream has ended: what is queued can no longer go."""
        self._closed = True
        self._queued.clear()

    async def write_to(self, call: Any) -> None:
        """The writer: hands what is queued to `call` until closed and empty, then half-closes it. Raises what writing raised."""
        while True:
            if not self._queued:
                self.written.set()
                if self._closed:
                    await call.done_writing()
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            await call.write(self._next_message())

    def _next_message(self) -> worker_pb2.WorkerMessage:
        """What is queued, as one message: a batch once the server takes batches, within its bounds."""
        limit = MAX_BATCH_MESSAGES if self.batching else 1
        batch: list[worker_pb2.WorkerMessage] = []
        total = 0
        while self._queued and len(batch) < limit:
            message, size = self._queued[0]
            if batch and total + size > BATCH_BYTES:
                break
            self._queued.popleft()
            batch.append(message)
            total += size
        self._on_write(batch)
        if len(batch) == 1:
            return batch[0]
        return worker_pb2.WorkerMessage(batch=worker_pb2.WorkerBatch(messages=batch))
