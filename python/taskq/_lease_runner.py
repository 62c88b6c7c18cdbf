"""
Runs leases for the Worker: builds each attempt's TaskContext, runs the handler (a plain function on
the handler thread pool, an async one on the loop), turns what it returned or raised into the
attempt's finish, and queues that finish on the session that delivered the lease. Owned by the
worker's event loop; only the contexts' reporters are called from handler threads.

Outcomes:
  returned a JSON value          success, unless over 1 MiB as JSON (or 4 MiB as protobuf, the stream's
                                 message limit): then a retry, as the server would treat it, without
                                 risking the whole stream
  raised RetryableError          retry, after its delay (clamped to the protocol's 0 to 7 days)
  raised after being cancelled   retry: an attempt cut off (interrupt, timeout, shutdown, worker
                                 stopping) is never a failure for good; the server ends an interrupted
                                 task CANCELED whatever the outcome
  raised anything else           failure, with the exception's message
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from ._gen import worker_pb2
from ._json import JsonValue, clean_text, from_struct, json_size, to_value
from ._session import StreamSession, bytes_bound
from ._temp_dirs import TempDirs
from .context import TaskContext, describe
from .errors import CancelReason, RetryableError, TaskqError
from .types import duration

# The largest result a server keeps, as JSON; a worker fails an attempt whose result is larger.
MAX_RESULT_BYTES = 1024 * 1024
# The server refuses (and ends the stream over) any message over 4 MiB; keep a finish well below.
_MAX_FINISH_PROTO_BYTES = 4 * 1024 * 1024 - 64 * 1024
_MAX_RETRY_DELAY_S = 7 * 24 * 3600.0


class _StreamReporter:
    """A context's log steps and status values, queued on its session from whatever thread the handler runs in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, session: StreamSession, task_id: str, lease_token: str) -> None:
        self._loop, self._session, self._task_id, self._token = loop, session, task_id, lease_token

    def log(self, message: str) -> None:
        text = clean_text(message)
        step = worker_pb2.LogStep(task_id=self._task_id, lease_token=self._token, message=text)
        self._queue(worker_pb2.WorkerMessage(log_step=step), bytes_bound(0, len(text)))

    def set_status(self, key: str, value: JsonValue) -> None:
        update = worker_pb2.SetStatusValue(task_id=self._task_id, lease_token=self._token, key=clean_text(key))
        update.value.CopyFrom(to_value(value, f"set_status({key})"))
        self._queue(worker_pb2.WorkerMessage(status_value=update), bytes_bound(json_size(value), len(key)))

    def _queue(self, message: worker_pb2.WorkerMessage, size: int) -> None:
        with contextlib.suppress(RuntimeError):  # the worker's loop has closed: the attempt is long over
            self._loop.call_soon_threadsafe(self._session.send, message, size)


class LeaseRunner:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: ThreadPoolExecutor,
        temp: TempDirs,
        handlers: dict[str, tuple[Callable[[TaskContext], Any], bool]],
        emit: Callable[..., None],
    ) -> None:
        self._loop = loop
        self._executor = executor
        self._temp = temp
        self._handlers = handlers
        self._emit = emit
        # The running attempts by lease token (a task re-leased after a timeout may run twice here).
        self._attempts: dict[str, tuple[TaskContext, StreamSession]] = {}

    @property
    def running(self) -> int:
        return len(self._attempts)

    def running_task_ids(self) -> set[str]:
        return {ctx.id for ctx, _ in self._attempts.values()}

    def cancel(self, lease_token: str, reason: CancelReason) -> None:
        attempt = self._attempts.get(lease_token)
        if attempt is not None:  # else it has just finished: nothing to stop
            attempt[0]._cancel(reason)

    def abort_session(self, session: StreamSession, reason: CancelReason) -> None:
        for ctx, s in list(self._attempts.values()):
            if s is session:
                ctx._cancel(reason)

    def abort_all(self, reason: CancelReason) -> None:
        for ctx, _ in list(self._attempts.values()):
            ctx._cancel(reason)

    async def run(self, lease: worker_pb2.Lease, session: StreamSession) -> None:
        task_id, token = lease.task_id, lease.lease_token
        ctx = TaskContext(
            id=task_id,
            type=lease.type,
            queue=lease.queue,
            params=from_struct(lease.params),
            title=lease.title,
            attempt=lease.attempt,
            max_attempts=lease.max_attempts,
            idempotency_key=lease.idempotency_key,
            reporter=_StreamReporter(self._loop, session, task_id, token),
            temp_dirs=self._temp,
        )
        self._attempts[token] = (ctx, session)
        finish = worker_pb2.Finish(task_id=task_id, lease_token=token)
        try:
            handler = self._handlers.get(lease.type)
            if handler is None:
                raise TaskqError(grpc.StatusCode.NOT_FOUND, f"no handler registered for task type {lease.type}")
            fn, is_async = handler
            result = await fn(ctx) if is_async else await self._loop.run_in_executor(self._executor, fn, ctx)
            size = _set_success(finish, result)
        except BaseException as err:  # whatever the handler raised is its attempt's outcome
            size = _set_error(finish, err, ctx.cancel_reason)
        finally:
            ctx._close()
            del self._attempts[token]
        if ctx._used_temp_dir:
            # The temp directory's expiry starts now; a failure to mark it must not lose the outcome.
            try:
                await self._loop.run_in_executor(None, self._temp.finished, task_id)
            except TaskqError as err:
                self._emit("temp dir", task=task_id, error=err.message)
        session.send(worker_pb2.WorkerMessage(finish=finish), size)


def _set_success(finish: worker_pb2.Finish, result: Any) -> int:
    """Fills a success; raises RetryableError for a result the server would not keep, TaskqError for one that is not JSON."""
    value = to_value(result, "result")
    json_bytes = json_size(result)
    if json_bytes > MAX_RESULT_BYTES:
        raise RetryableError(f"result: {json_bytes} bytes, larger than the limit of {MAX_RESULT_BYTES}")
    proto_bytes = value.ByteSize()
    if proto_bytes > _MAX_FINISH_PROTO_BYTES:
        raise RetryableError(f"result: {proto_bytes} bytes as protobuf, larger than a worker stream's message limit")
    finish.success.result.CopyFrom(value)
    return bytes_bound(json_bytes, 0)


def _set_error(finish: worker_pb2.Finish, err: BaseException, cancelled: CancelReason | None) -> int:
    message = clean_text(describe(err))
    if isinstance(err, RetryableError):
        finish.retry.error = message
        if err.delay is not None:
            finish.retry.delay.CopyFrom(duration(min(max(err.delay, 0.0), _MAX_RETRY_DELAY_S)))
    elif cancelled is not None:
        finish.retry.error = message
    else:
        finish.failure.error = message
    return bytes_bound(0, len(message))
