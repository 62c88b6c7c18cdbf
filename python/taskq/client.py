"""
TaskClient: dispatch tasks and follow them. `dispatch` returns a TaskHandle whose `result()` waits for
the outcome, `watch()` yields every change, `interrupt()` stops the task and `retry()` runs a failed one
again as a new task. Operators interrupt or retry many tasks at once (interrupt_many, retry_many), read
the audit log of what was done (list_audit), count tasks by status (count_tasks) and read what the
server sampled of each queue (get_stats). Every method takes and returns the SDK's own types (types.py)
and raises TaskqError. The client is synchronous and safe to share between threads.

Calls are made with wait_for_ready: while the server is unreachable (restarting), a call waits for it
instead of failing at once, up to `call_timeout` seconds for the unary calls. Times are in seconds.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import grpc

from ._connection import DEFAULT_URL, TlsOptions, auth_metadata, open_channel
from ._gen import task_pb2, task_queue_pb2
from ._gen.services import TaskQueueStub
from ._json import JsonObject, JsonValue, to_struct
from ._watch import resuming_watch
from .errors import TaskFailedError, TaskqError, invalid
from .types import (
    AuditPage,
    BulkResult,
    QueueInfo,
    QueueList,
    ScheduleInfo,
    SnapshotEvent,
    Stats,
    StatusCount,
    StatusEvent,
    TaskFilter,
    TaskInfo,
    TaskOrigin,
    TaskPage,
    TaskStatus,
    WatchEvent,
    WorkerInfo,
    audit_entry_from_pb,
    duration,
    is_final,
    origin_number,
    queue_from_pb,
    schedule_from_pb,
    stats_from_pb,
    status_count_from_pb,
    status_name,
    status_numbers,
    task_filter_to_pb,
    task_from_pb,
    timestamp,
    worker_from_pb,
)

# The unary calls' deadline by default: long enough to ride out a server restart, short enough to notice a wrong URL.
DEFAULT_CALL_TIMEOUT_S = 60.0
# How long watch() and result() keep trying to reach the server after a break before they give up.
DEFAULT_WATCH_RECONNECT_S = 30.0
# Past any log sequence: result() watches for the final status only.
_AFTER_ALL_LOGS = 2**53 - 1

ActiveSortKey = Literal["id", "status", "title", "created", "started", "attempts", "priority", "type", "origin"]
# Any: the generated stubs type enum fields by their wrapper classes, which hold plain ints.
_SORT_FIELDS: dict[str, Any] = {
    "id": task_queue_pb2.ACTIVE_SORT_FIELD_ID,
    "status": task_queue_pb2.ACTIVE_SORT_FIELD_STATUS,
    "title": task_queue_pb2.ACTIVE_SORT_FIELD_TITLE,
    "created": task_queue_pb2.ACTIVE_SORT_FIELD_CREATED_AT,
    "started": task_queue_pb2.ACTIVE_SORT_FIELD_STARTED_AT,
    "attempts": task_queue_pb2.ACTIVE_SORT_FIELD_ATTEMPTS,
    "priority": task_queue_pb2.ACTIVE_SORT_FIELD_PRIORITY,
    "type": task_queue_pb2.ACTIVE_SORT_FIELD_TYPE,
    "origin": task_queue_pb2.ACTIVE_SORT_FIELD_ORIGIN,
}

Response = TypeVar("Response")

# A W3C traceparent: version (not ff), trace id and parent id (not all zeros), flags, in lowercase hex; a
# version after 00 may add fields, which the server ignores, as the recommendation says.
_TRACEPARENT = re.compile(r"(?!ff)([0-9a-f]{2})-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-[\x20-\x7e]*)?")
# What gRPC metadata can carry: printable ASCII.
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
# The largest value a uint32 field holds: a larger count is sent as this, for the server to refuse with its own limit.
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class DispatchItem:
    """One task to queue: its type, params and options (seconds for every duration)."""

    type: str
    params: Mapping[str, Any] | None = None
    queue: str | None = None
    title: str | None = None
    priority: int | None = None
    origin: TaskOrigin | None = None
    initiator: str | None = None
    node_id: str | None = None
    timeout: float | None = None
    max_attempts: int | None = None
    retry_delay: float | None = None
    backoff: Literal["fixed", "exponential"] | None = None
    # Run no sooner than this many seconds after dispatch.
    delay: float | None = None
    # Run no sooner than this time (naive datetimes are taken as local time).
    run_at: datetime | None = None
    # Dispatching the same key again returns the first task instead of queuing another.
    idempotency_key: str | None = None
    # Whose work this is within its queue, such as a tenant or customer id (at most 200 characters). The
    # task keeps it (TaskInfo.concurrency_key) and its handler reads it as ctx.concurrency_key.
    concurrency_key: str | None = None


class TaskClient:
    """A client of one taskq server; close() it (or use it as a context manager) when done."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        tls: TlsOptions | None = None,
        *,
        call_timeout: float | None = DEFAULT_CALL_TIMEOUT_S,
        watch_reconnect_timeout: float = DEFAULT_WATCH_RECONNECT_S,
    ) -> None:
        self._channel = open_channel(url, tls)
        self._metadata = auth_metadata(token)
        self._timeout = call_timeout
        self._watch_reconnect = watch_reconnect_timeout
        # The escape hatch: the raw stub on the same channel, for a call or field the SDK does not wrap.
        # It speaks the generated wire types, which are not part of the SDK's API; it raises grpc.RpcError.
        self.rpc = TaskQueueStub(self._channel)

    def __enter__(self) -> TaskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, deadline: float | None = None, metadata: Sequence[tuple[str, str]] = ()) -> Any:
        """
        One unary call, within call_timeout and, when given, before `deadline` (a time.monotonic() value),
        with `metadata` sent besides the token.
        """
        timeout = self._timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TaskqError(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call")
            timeout = left if timeout is None else min(timeout, left)
        try:
            return method(request, metadata=(*self._metadata, *metadata), wait_for_ready=True, timeout=timeout)
        except grpc.RpcError as err:
            raise TaskqError.from_rpc_error(err) from err

    def dispatch(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        title: str | None = None,
        priority: int | None = None,
        origin: TaskOrigin | None = None,
        initiator: str | None = None,
        node_id: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        retry_delay: float | None = None,
        backoff: Literal["fixed", "exponential"] | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        trace_parent: str | None = None,
        trace_state: str | None = None,
    ) -> TaskHandle:
        """
        Queues a task; the options are DispatchItem's (durations in seconds). `trace_parent` and
        `trace_state` are the W3C trace context of the caller's span (the `traceparent` and `tracestate`
        headers), sent as the call's gRPC metadata of those names so that the task joins the trace.
        """
        item = DispatchItem(
            type, params, queue, title, priority, origin, initiator, node_id, timeout,
            max_attempts, retry_delay, backoff, delay, run_at, idempotency_key, concurrency_key,
        )
        metadata = trace_metadata(trace_parent, trace_state)
        res = self._call(self.rpc.Dispatch, dispatch_request(item), metadata=metadata)
        return TaskHandle(self, res.task_id, res.created)

    def dispatch_batch(
        self, items: Iterable[DispatchItem], *, trace_parent: str | None = None, trace_state: str | None = None
    ) -> list[TaskHandle]:
        """
        Queues many tasks in one round trip; all or none. Handles come back in the same order. The trace
        context, as dispatch() takes it, is the call's: it applies to every task of the batch.
        """
        metadata = trace_metadata(trace_parent, trace_state)
        req = task_queue_pb2.DispatchBatchRequest(tasks=[dispatch_request(i) for i in items])
        res = self._call(self.rpc.DispatchBatch, req, metadata=metadata)
        return [TaskHandle(self, r.task_id, r.created) for r in res.results]

    def handle(self, task_id: str) -> TaskHandle:
        """A handle for a task dispatched earlier."""
        return TaskHandle(self, task_id, False)

    def status(self, task_id: str) -> TaskInfo:
        return task_from_pb(self._call(self.rpc.Status, task_queue_pb2.StatusRequest(task_id=task_id)).task)

    def watch(self, task_id: str, after_seq: int = 0, *, timeout: float | None = None) -> Iterator[WatchEvent]:
        """
        A snapshot, then every change (log steps, status values, statuses) until the task's final status.
        A broken connection is resumed from the last log step seen, so nothing is missed or repeated.
        `after_seq` starts after a log step seen before; `timeout` bounds the whole watch. Stop early by
        breaking out of the loop (or closing the iterator).
        """
        return self._watch(task_id, after_seq, None if timeout is None else time.monotonic() + timeout)

    def _watch(self, task_id: str, after_seq: int, deadline: float | None) -> Iterator[WatchEvent]:
        def open_stream(req: task_queue_pb2.WatchTaskRequest, call_timeout: float | None) -> Any:
            return self.rpc.WatchTask(req, metadata=self._metadata, wait_for_ready=True, timeout=call_timeout)

        return resuming_watch(open_stream, task_id, after_seq, self._watch_reconnect, deadline)

    def interrupt(self, task_id: str, reason: str = "") -> Literal["canceled", "cancelling"]:
        res = self._call(self.rpc.Interrupt, task_queue_pb2.InterruptRequest(task_id=task_id, reason=reason))
        return "canceled" if status_name(res.status) == "canceled" else "cancelling"

    def retry(self, task_id: str) -> TaskHandle:
        """
        Runs a FAILED, CANCELED or STUCK task again as a new task with the same type, queue, params and
        settings, and returns the new task's handle; the new task's `retry_of` and the old one's
        `retried_as` link them. A task retried before gives back that retry, with `created` False.
        FAILED_PRECONDITION for a task still active or COMPLETED. Needs an admin token when the server has auth.
        """
        res = self._call(self.rpc.Retry, task_queue_pb2.RetryRequest(task_id=task_id))
        return TaskHandle(self, res.task_id, res.created)

    def interrupt_many(self, filter: TaskFilter, *, dry_run: bool = False, limit: int | None = None, reason: str = "") -> BulkResult:
        """
        Interrupts the pending and running tasks `filter` matches, as interrupt() does each, at most `limit`
        (default 10,000) per call; `more_remain` says to call again. `dry_run` only counts them. An empty
        filter is refused (INVALID_ARGUMENT). Needs an admin token when the server has auth.
        """
        req = task_queue_pb2.InterruptManyRequest(
            filter=task_filter_to_pb(filter), dry_run=dry_run, limit=_count("limit", limit), reason=reason
        )
        res = self._call(self.rpc.InterruptMany, req)
        return BulkResult(res.count, res.more_remain)

    def retry_many(self, filter: TaskFilter, *, dry_run: bool = False, limit: int | None = None) -> BulkResult:
        """
        Retries the failed, canceled and stuck tasks `filter` matches that were not retried yet, as retry()
        does each, at most `limit` (default 10,000) per call; `more_remain` says to call again. `dry_run`
        only counts them. An empty filter is refused (INVALID_ARGUMENT). Needs an admin token when the
        server has auth.
        """
        req = task_queue_pb2.RetryManyRequest(filter=task_filter_to_pb(filter), dry_run=dry_run, limit=_count("limit", limit))
        res = self._call(self.rpc.RetryMany, req)
        return BulkResult(res.count, res.more_remain)

    def list_audit(self, *, page_size: int | None = None, page_token: str = "") -> AuditPage:
        """
        One page of the audit log (retries and bulk actions: who, what, how many), newest first; at most
        `page_size` entries (1 to 500, default 50). Needs an admin token when the server has auth.
        """
        req = task_queue_pb2.ListAuditRequest(page_size=_count("page_size", page_size), page_token=page_token)
        res = self._call(self.rpc.ListAudit, req)
        return AuditPage([audit_entry_from_pb(e) for e in res.entries], res.next_page_token)

    def count_tasks(
        self, *, queue: str | None = None, type_prefix: str | None = None, origin: TaskOrigin | None = None
    ) -> list[StatusCount]:
        """
        How many tasks are in each status: every status, in TASK_STATUSES order, zeros included; a count
        stops at 10,000 and says so. `type_prefix` keeps the tasks whose type starts with it (case matters).
        """
        req = task_queue_pb2.CountTasksRequest(queue=queue or "", type_prefix=type_prefix or "", origin=origin_number(origin))
        return [status_count_from_pb(c) for c in self._call(self.rpc.CountTasks, req).counts]

    def get_stats(self, *, window: float | None = None, queue: str | None = None) -> Stats:
        """
        Each queue's depth and finished tasks by status, as the server sampled them over the last `window`
        seconds (default one hour, at most 24 hours), oldest first; `queue` narrows them to one queue.
        """
        req = task_queue_pb2.GetStatsRequest(queue=queue or "")
        if window is not None:
            if not window > 0:
                raise invalid(f"window: {window} is not a positive number of seconds")
            req.window.CopyFrom(duration(window))
        return stats_from_pb(self._call(self.rpc.GetStats, req))

    def list_active(
        self,
        *,
        id: str = "",
        title_search: str = "",
        type: str = "",
        type_prefix: str = "",
        queue: str = "",
        statuses: Sequence[TaskStatus] = (),
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        sort: ActiveSortKey | None = None,
        descending: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> TaskPage:
        """
        One page of the Active list: tasks pending, running or cancelling, filtered and sorted. `type_prefix`
        keeps the tasks whose type starts with it (case matters).
        """
        if sort is not None and sort not in _SORT_FIELDS:
            raise invalid(f'sort: "{sort}" is not one of {", ".join(_SORT_FIELDS)}')
        req = task_queue_pb2.ListActiveRequest(
            id=id,
            title_search=title_search,
            type=type,
            type_prefix=type_prefix,
            queue=queue,
            statuses=status_numbers(statuses),
            sort_by=_SORT_FIELDS[sort] if sort else task_queue_pb2.ACTIVE_SORT_FIELD_UNSPECIFIED,
            descending=descending,
            page_size=page_size,
            page_token=page_token,
        )
        if created_after is not None:
            req.created_after.CopyFrom(timestamp(created_after))
        if created_before is not None:
            req.created_before.CopyFrom(timestamp(created_before))
        res = self._call(self.rpc.ListActive, req)
        return TaskPage([task_from_pb(t) for t in res.tasks], res.next_page_token)

    def list_history(
        self,
        *,
        origin: TaskOrigin | None = None,
        statuses: Sequence[TaskStatus] = (),
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        type: str = "",
        type_prefix: str = "",
        queue: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> TaskPage:
        """
        One page of the Task history: running and finished tasks, newest first, filtered. `type_prefix`
        keeps the tasks whose type starts with it (case matters).
        """
        req = task_queue_pb2.ListHistoryRequest(
            origin=origin_number(origin),
            statuses=status_numbers(statuses),
            type=type,
            type_prefix=type_prefix,
            queue=queue,
            page_size=page_size,
            page_token=page_token,
        )
        if created_after is not None:
            req.created_after.CopyFrom(timestamp(created_after))
        if created_before is not None:
            req.created_before.CopyFrom(timestamp(created_before))
        res = self._call(self.rpc.ListHistory, req)
        return TaskPage([task_from_pb(t) for t in res.tasks], res.next_page_token)

    def list_queues(self) -> QueueList:
        """Every queue with its limit, waiting and running tasks, and whether it is paused; and the global limit."""
        res = self._call(self.rpc.ListQueues, task_queue_pb2.ListQueuesRequest())
        limit = res.global_max_workers if res.HasField("global_max_workers") else None
        return QueueList([queue_from_pb(q) for q in res.queues], limit, res.running)

    def pause_queue(self, queue: str) -> QueueInfo:
        """Stops leasing the queue's tasks on every server replica; running tasks go on."""
        return queue_from_pb(self._call(self.rpc.PauseQueue, task_queue_pb2.PauseQueueRequest(queue=queue)).queue)

    def resume_queue(self, queue: str) -> QueueInfo:
        return queue_from_pb(self._call(self.rpc.ResumeQueue, task_queue_pb2.ResumeQueueRequest(queue=queue)).queue)

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every cron schedule with its next and last run."""
        res = self._call(self.rpc.ListSchedules, task_queue_pb2.ListSchedulesRequest())
        return [schedule_from_pb(s) for s in res.schedules]

    def list_workers(self) -> list[WorkerInfo]:
        """Every connected worker session, on every replica, oldest connection first."""
        res = self._call(self.rpc.ListWorkers, task_queue_pb2.ListWorkersRequest())
        return [worker_from_pb(w) for w in res.workers]


class TaskHandle:
    """A dispatched task: `id`, and `created` (False when an idempotency key matched a task dispatched before)."""

    def __init__(self, client: TaskClient, task_id: str, created: bool) -> None:
        self._client = client
        self.id = task_id
        self.created = created

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"

    def status(self) -> TaskInfo:
        return self._client.status(self.id)

    def watch(self, after_seq: int = 0, *, timeout: float | None = None) -> Iterator[WatchEvent]:
        """A snapshot, then every change until the final status; see TaskClient.watch."""
        return self._client.watch(self.id, after_seq, timeout=timeout)

    def result(self, timeout: float | None = None) -> JsonValue:
        """
        Waits for the final status: returns the result when the task COMPLETED, raises TaskFailedError
        (carrying the status and the task) when it ended FAILED, CANCELED or STUCK, and TaskqError when
        the task cannot be watched (NOT_FOUND, the server stayed unreachable) or `timeout` seconds
        passed first (DEADLINE_EXCEEDED). `timeout` bounds the whole wait, the reading of the outcome
        after the final status included.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        events = self._client._watch(self.id, _AFTER_ALL_LOGS, deadline)
        try:
            for event in events:
                status = event.task.status if isinstance(event, SnapshotEvent) else event.status if isinstance(event, StatusEvent) else None
                if status is not None and is_final(status):
                    task = self._final_task(deadline)
                    if task.status == "completed":
                        return task.result
                    raise TaskFailedError(task)
        finally:
            events.close()  # type: ignore[attr-defined]
        raise TaskqError(grpc.StatusCode.INTERNAL, f"watching task {self.id} ended before its final status")

    def interrupt(self, reason: str = "") -> Literal["canceled", "cancelling"]:
        return self._client.interrupt(self.id, reason)

    def retry(self) -> TaskHandle:
        """Runs the task again as a new one, once it FAILED, was CANCELED or is STUCK; see TaskClient.retry."""
        return self._client.retry(self.id)

    def _final_task(self, deadline: float | None) -> TaskInfo:
        """The finished task as Status reads it (a TaskFailedError carries it whole), read before `deadline`."""
        request = task_queue_pb2.StatusRequest(task_id=self.id)
        try:
            res = self._client._call(self._client.rpc.Status, request, deadline)
        except TaskqError as err:
            if err.code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None and time.monotonic() >= deadline:
                raise TaskqError(err.code, f"task {self.id} ended, but its outcome could not be read in time") from err
            raise
        return task_from_pb(res.task)


def dispatch_request(item: DispatchItem) -> task_queue_pb2.DispatchRequest:
    backoffs = {
        None: task_pb2.RETRY_BACKOFF_UNSPECIFIED,
        "fixed": task_pb2.RETRY_BACKOFF_FIXED,
        "exponential": task_pb2.RETRY_BACKOFF_EXPONENTIAL,
    }
    if item.backoff not in backoffs:
        raise invalid(f'backoff: "{item.backoff}" is not fixed or exponential')
    req = task_queue_pb2.DispatchRequest(
        type=item.type,
        queue=item.queue or "",
        title=item.title or "",
        priority=item.priority or 0,
        origin=origin_number(item.origin),
        initiator=item.initiator or "",
        node_id=item.node_id or "",
        retry_backoff=backoffs[item.backoff],
        idempotency_key=item.idempotency_key or "",
        concurrency_key=item.concurrency_key or "",
    )
    req.params.CopyFrom(to_struct(item.params or {}, "params"))
    for name in ("timeout", "retry_delay", "delay"):
        secs = getattr(item, name)
        if secs is not None:
            if secs < 0:
                raise invalid(f"{name}: {secs} is negative")
            getattr(req, name).CopyFrom(duration(secs))
    if item.max_attempts is not None:
        req.max_attempts = item.max_attempts
    if item.run_at is not None:
        req.run_at.CopyFrom(timestamp(item.run_at))
    return req


def trace_metadata(trace_parent: str | None, trace_state: str | None) -> list[tuple[str, str]]:
    """
    The W3C trace context as gRPC metadata (`traceparent`, `tracestate`). A malformed traceparent is
    refused (INVALID_ARGUMENT): the server would ignore it, as W3C says to, and the task would silently
    start a trace of its own. A tracestate needs a traceparent (alone it means nothing), and both must
    be printable ASCII, all that gRPC metadata carries.
    """
    metadata: list[tuple[str, str]] = []
    if trace_parent is not None:
        m = _TRACEPARENT.fullmatch(trace_parent)
        if not m or (m.group(1) == "00" and m.group(2) is not None):
            shape = "00-<32 hex>-<16 hex>-<2 hex>, lowercase, ids not all zero"
            raise invalid(f'trace_parent: "{trace_parent}" is not a W3C traceparent ({shape})')
        metadata.append(("traceparent", trace_parent))
    if trace_state is not None:
        if trace_parent is None:
            raise invalid("trace_state: given without trace_parent")
        if not _PRINTABLE_ASCII.fullmatch(trace_state):
            raise invalid(f"trace_state: {trace_state!r} holds characters other than printable ASCII")
        metadata.append(("tracestate", trace_state))
    return metadata


def _count(name: str, value: int | None) -> int:
    """An optional count (a limit, a page size) for the wire, where 0 means the server's default: None sends that."""
    if value is None:
        return 0
    if value < 1:
        raise invalid(f"{name}: {value} is less than 1 (leave it out for the server's default)")
    return min(value, _UINT32_MAX)


__all__ = ["DEFAULT_CALL_TIMEOUT_S", "DispatchItem", "JsonObject", "TaskClient", "TaskHandle"]
