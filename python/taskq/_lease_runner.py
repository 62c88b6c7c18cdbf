"""
Runs leases for the Worker: builds each attempt's TaskContext, runs the handler (a plain function on
the handler thread pool, an async one on the loop), turns what it returned or raised into the
attempt's finish, and queues that finish on the session that delivered the lease. Owned by the
worker's event loop; only the contexts' reporters are called from handler threads.

Outcomes:
  cancelled before it started    decline: the lease goes back unrun and the attempt does not count (an
                                 interrupted task ends CANCELED). A plain function waits for a thread of
                                 the pool, which a handler that ignored its cancellation may still hold;
                                 one cancelled meanwhile (its session's leases lapsed, an interrupt, the
                                 worker stopping) never starts, and is declined at once
  returned a JSON value          success, unless over 1 MiB as JSON (or 4 MiB as protobuf, the stream's
                                 message limit): then a retry, as the server would treat it, without
                                 risking the whole stream
  returned something not JSON    failure, saying what and where (NaN, an infinity, a set, ...): the
                                 server could not record it either
  raised after being cancelled   retry with delay 0, whatever it raised (a RetryableError or TaskSnoozed
                                 too): an attempt cut off (interrupt, timeout, lease lost, worker
                                 stopping) did not fail on its own, so it is given back at once rather
                                 than after the task's retry delay, and never fails the task for good;
                                 the server ends an interrupted task CANCELED whatever the outcome (as
                                 the TypeScript SDK does)
  raised RetryableError          retry, after its delay (clamped to the protocol's 0 to 7 days; none, the
                                 task's retry delay, when it gave none or NaN)
  raised TaskSnoozed             snooze (ctx.snooze): due again after its delay (clamped likewise, NaN as
                                 0), the attempt not counted
  raised anything else           failure, with the exception's message
"""
from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf import duration_pb2

from ._gen import worker_pb2
from ._json import JsonValue, clean_text, from_struct, json_size, to_value
from ._outbox import bytes_bound
from ._session import StreamSession
from ._temp_dirs import TempDirs
from .context import TaskContext, describe
from .errors import CancelReason, RetryableError, TaskqError, TaskSnoozed
from .types import duration

# The largest result a server keeps, as JSON; a worker fails an attempt whose result is larger.
MAX_RESULT_BYTES = 1024 * 1024
# The server refuses (and ends the stream over) any message over 4 MiB; keep a finish well below.
_MAX_FINISH_PROTO_BYTES = 4 * 1024 * 1024 - 64 * 1024
# The longest delay a retry or a snooze may carry.
_MAX_DELAY_S = 7 * 24 * 3600.0


class _StreamReporter:
    """A context's log steps, status values and deadline extensions, queued on its session from whatever thread the handler runs in."""

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

    def extend_deadline(self, seconds: float) -> None:
        extend = worker_pb2.ExtendDeadline(task_id=self._task_id, lease_token=self._token, timeout=duration(seconds))
        self._queue(worker_pb2.WorkerMessage(extend_deadline=extend), bytes_bound(0, 0))

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

    def run(self, lease: worker_pb2.Lease, session: StreamSession) -> Coroutine[Any, Any, None]:
        """
        Registers the attempt at once, so that a cancel right behind its lease (in the same batch) finds
        it, and returns the coroutine that runs it and queues its finish.
        """
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
            concurrency_key=lease.concurrency_key,
            reporter=_StreamReporter(self._loop, session, task_id, token),
            temp_dirs=self._temp,
            trace_parent=lease.trace_parent,
            trace_state=lease.trace_state,
        )
        self._attempts[token] = (ctx, session)
        return self._run(ctx, token, session)

    async def _run(self, ctx: TaskContext, token: str, session: StreamSession) -> None:
        task_id = ctx.id
        finish = worker_pb2.Finish(task_id=task_id, lease_token=token)
        try:
            handler = self._handlers.get(ctx.type)
            if handler is None:
                raise TaskqError(grpc.StatusCode.NOT_FOUND, f"no handler registered for task type {ctx.type}")
            result = await self._call(*handler, ctx, token, session)
            size = _set_success(finish, result)
        except _NotStarted:
            return  # declined already
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
        session.send_finish(finish, size, expect_not_held=ctx.cancel_reason in _ENDED_BY_THE_SERVER)

    async def _call(self, fn: Callable[[TaskContext], Any], is_async: bool, ctx: TaskContext, token: str, session: StreamSession) -> Any:
        """
        The handler's result. Raises _NotStarted, once the lease is declined, when the attempt was
        cancelled before the handler could start.
        """
        if not ctx._may_start():
            _decline(ctx, token, session)
            raise _NotStarted
        if is_async:
            return await fn(ctx)
        job = self._executor.submit(_start_unless_cancelled, fn, ctx)

        def withdraw() -> None:
            # Called where the attempt is cancelled, on the loop: a lapsing session ends its stream right after.
            if job.cancel():
                _decline(ctx, token, session)

        ctx._add_cancel_callback(withdraw)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if job.cancelled():  # withdrawn: declined already
                raise _NotStarted from None
            raise
        except _NotStarted:  # cancelled as a thread took it up
            _decline(ctx, token, session)
            raise


# Cancel reasons for which the server has ended the attempt itself: a timeout, a shutdown, a session it lost.
_ENDED_BY_THE_SERVER = ("timed_out", "shutdown", "lease_lost")


class _NotStarted(Exception):
    """The attempt was cancelled before its handler started."""


def _decline(ctx: TaskContext, token: str, session: StreamSession) -> None:
    """Gives the lease back unrun: the task is due again at once, and this attempt does not count."""
    finish = worker_pb2.Finish(task_id=ctx.id, lease_token=token, decline=worker_pb2.Decline())
    session.send_finish(finish, expect_not_held=ctx.cancel_reason in _ENDED_BY_THE_SERVER)


def _start_unless_cancelled(fn: Callable[[TaskContext], Any], ctx: TaskContext) -> Any:
    """On a handler thread: runs the handler, unless its attempt was cancelled while it waited for the thread."""
    if not ctx._may_start():
        raise _NotStarted
    return fn(ctx)


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
    if cancelled is not None:
        finish.retry.error = message
        finish.retry.delay.CopyFrom(duration(0))
    elif isinstance(err, RetryableError):
        finish.retry.error = message
        if err.delay is not None and not math.isnan(err.delay):  # NaN: no delay given, as in the TypeScript SDK
            finish.retry.delay.CopyFrom(_held_delay(err.delay))
    elif isinstance(err, TaskSnoozed):
        finish.snooze.delay.CopyFrom(_held_delay(0.0 if math.isnan(err.delay) else err.delay))
        return bytes_bound(0, 0)
    else:
        finish.failure.error = message
    return bytes_bound(0, len(message))


def _held_delay(seconds: float) -> duration_pb2.Duration:
    """A retry's or a snooze's delay, held to what the protocol takes (0 to 7 days)."""
    return duration(min(max(seconds, 0.0), _MAX_DELAY_S))
