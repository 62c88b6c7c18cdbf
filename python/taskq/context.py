"""
TaskContext: what a handler gets. The task's fields (with the W3C trace context it was dispatched
in), a log and status values that reach watchers while the task runs, a temp directory, more time
(extend_deadline), a way to run again later without spending the attempt (snooze), and cancellation.

Cancellation is cooperative: when the task is interrupted, times out, the server shuts down, the
stream to it breaks, or the worker stops past its grace, `cancelled` (a threading.Event) is set and
`cancel_reason` says why. `sleep()` and `sleep_async()` wake at once then and raise TaskCancelled, so a
handler that waits with them stops without checking anything; a handler busy computing checks
`cancelled` (or calls `raise_if_cancelled()`) between steps. Whatever a handler raises after that is
reported as a retry with a delay of 0 (_lease_runner.py): an interrupted task ends CANCELED whatever
comes, the server has already ended an attempt that timed out, met its shutdown or lost its lease,
and one cut off by the worker stopping runs again at once.

log, set_status, progress and extend_deadline may be called from any thread; once the attempt has
ended they do nothing.
"""
from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

from ._json import JsonObject, JsonValue, to_value
from .errors import CancelReason, TaskCancelled, TaskSnoozed, invalid

# What ExtendDeadline takes: 1 ms to 7 days.
MIN_EXTENSION_S = 0.001
MAX_EXTENSION_S = 7 * 24 * 3600.0


class Reporter(Protocol):
    """
    Where a context's log steps, status values and deadline extensions go: the worker's stream, or the
    terminal (immediate mode, where no timeout applies and an extension goes nowhere).
    """

    def log(self, message: str) -> None: ...

    def set_status(self, key: str, value: JsonValue) -> None: ...

    def extend_deadline(self, seconds: float) -> None: ...


class TempDirAccess(Protocol):
    def create(self, task_id: str) -> Path: ...

    def set_ttl(self, task_id: str, seconds: float) -> None: ...


class TaskContext:
    def __init__(
        self,
        *,
        id: str,
        type: str,
        queue: str,
        params: JsonObject,
        title: str,
        attempt: int,
        max_attempts: int,
        idempotency_key: str,
        concurrency_key: str,
        reporter: Reporter,
        temp_dirs: TempDirAccess,
        trace_parent: str = "",
        trace_state: str = "",
    ) -> None:
        self.id = id
        self.type = type
        self.queue = queue
        self.params = params
        self.title = title
        # This attempt's number, from 1.
        self.attempt = attempt
        self.max_attempts = max_attempts
        # The key given at dispatch; with `attempt`, what a handler needs to avoid repeating side effects.
        self.idempotency_key = idempotency_key
        # The concurrency key given at dispatch: whose work this is within its queue, such as a tenant or
        # customer id ("" when none).
        self.concurrency_key = concurrency_key
        # The W3C traceparent the lease carried: the trace the task was dispatched in ("" when none), for a
        # handler to continue it (as the parent of its own span) or to pass it on.
        self.trace_parent = trace_parent
        # The W3C tracestate that goes with trace_parent ("" when none).
        self.trace_state = trace_state
        # Set when the attempt must stop; cancel_reason says why.
        self.cancelled = threading.Event()
        self._reason: CancelReason | None = None
        self._reporter = reporter
        self._temp_dirs = temp_dirs
        self._used_temp_dir = False
        self._open = True
        self._lock = threading.Lock()
        self._on_cancel: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"TaskContext(id={self.id!r}, type={self.type!r}, attempt={self.attempt})"

    @property
    def cancel_reason(self) -> CancelReason | None:
        """Why the attempt must stop: interrupted, timed_out, shutdown, lease_lost or worker_stopping; None while it may go on."""
        return self._reason

    def log(self, message: object) -> None:
        """Appends a step to the task's log."""
        if self._open:
            self._reporter.log(str(message))

    def set_status(self, key: str, value: JsonValue) -> None:
        """
        Sets a status value, such as ("progress", 40). Raises JsonValueError (a ValueError) here, at the
        call, for a value JSON cannot hold, such as NaN: nothing is sent then.
        """
        to_value(value, f"set_status({key})")  # fails here, in the handler, rather than on the stream
        if self._open:
            self._reporter.set_status(key, value)

    def progress(self, percent: float) -> None:
        """Shorthand for set_status("progress", percent)."""
        self.set_status("progress", percent)

    def extend_deadline(self, seconds: float) -> None:
        """
        Gives this attempt at least `seconds` more from now before it times out (held to 1 ms to 7
        days; the deadline never moves earlier): for a handler that legitimately runs long, calling it
        as often as it likes, say every minute. Not while the task is being interrupted (its grace
        period stays). Sent like a log step: nothing to wait for; a refusal comes as an "update
        rejected" event. Raises TaskqError (INVALID_ARGUMENT) for NaN, which says no length of time.
        """
        if math.isnan(seconds):
            raise invalid("extend_deadline: seconds is NaN")
        if self._open:
            self._reporter.extend_deadline(min(max(seconds, MIN_EXTENSION_S), MAX_EXTENSION_S))

    def snooze(self, seconds: float) -> NoReturn:
        """
        Ends this attempt without spending it: the task waits `seconds` (held to 0 to 7 days; NaN as
        0), then runs again. Raises TaskSnoozed for the worker to catch, so `ctx.snooze(60)` ends the
        handler where it is called (a handler that catches it must raise it again). In immediate mode
        there is no queue to wait in: the run fails with the TaskSnoozed.
        """
        raise TaskSnoozed(seconds)

    def raise_if_cancelled(self) -> None:
        """Raises TaskCancelled once the attempt must stop."""
        if self._reason is not None:
            raise TaskCancelled(self._reason)

    def sleep(self, seconds: float) -> None:
        """Waits `seconds`; raises TaskCancelled at once when the attempt must stop (before or during the wait)."""
        self.cancelled.wait(max(0.0, seconds))
        self.raise_if_cancelled()

    async def sleep_async(self, seconds: float) -> None:
        """sleep() for async handlers: waits without blocking the event loop."""
        self.raise_if_cancelled()
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not woken.done():
                woken.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(resolve)

        self._add_cancel_callback(wake)
        try:
            await asyncio.wait([woken], timeout=max(0.0, seconds))
        finally:
            with self._lock:
                if wake in self._on_cancel:
                    self._on_cancel.remove(wake)
        self.raise_if_cancelled()

    def temp_dir(self) -> Path:
        """
        A directory for this task's files, under the worker's storage root (created on first call). It
        is deleted an hour after the task finishes, or as set_temp_expiration says.
        """
        self._used_temp_dir = True
        return self._temp_dirs.create(self.id)

    def set_temp_expiration(self, seconds: float) -> None:
        """Keep the temp directory this many seconds after the task finishes; call after temp_dir()."""
        self._temp_dirs.set_ttl(self.id, seconds)

    # What the worker does with the context (not for handlers).

    def _cancel(self, reason: CancelReason) -> None:
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
            callbacks = list(self._on_cancel)
        self.cancelled.set()
        for callback in callbacks:
            callback()

    def _may_start(self) -> bool:
        """Whether the handler may start now: not once the attempt was cancelled (its lease may be gone)."""
        return self._reason is None

    def _add_cancel_callback(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if self._reason is None:
                self._on_cancel.append(callback)
                return
        callback()

    def _close(self) -> None:
        """The attempt ended: later log steps and status values go nowhere."""
        self._open = False


def describe(err: BaseException) -> str:
    """An exception as an error text: its message, or its class name when it has none."""
    text = str(err)
    return text if text else type(err).__name__


HandlerResult = Any
