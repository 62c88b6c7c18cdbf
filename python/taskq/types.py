"""
Plain Python shapes of tasks, queues, schedules, workers, watch events, bulk actions, the audit log and
sampled statistics, converted from and to the wire types: statuses, origins, attempt outcomes and wait
reasons as names, times as timezone-aware datetimes (UTC), durations in seconds (float), JSON as Python
values (see _json.py for numbers). Nothing a caller handles needs the generated code.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeAlias

from google.protobuf import duration_pb2, timestamp_pb2

from ._gen import task_pb2, task_queue_pb2
from ._json import JsonObject, JsonValue, from_struct, from_value
from .errors import invalid

TaskStatus = Literal["pending", "running", "cancelling", "completed", "failed", "canceled", "stuck"]
TaskOrigin = Literal["user", "system"]

# Every status, in the order a task goes through them: the active ones, then the final ones.
TASK_STATUSES: tuple[TaskStatus, ...] = ("pending", "running", "cancelling", "completed", "failed", "canceled", "stuck")
ACTIVE_STATUSES: tuple[TaskStatus, ...] = ("pending", "running", "cancelling")
# The statuses a task ends in; it changes no more after one.
FINAL_STATUSES: tuple[TaskStatus, ...] = ("completed", "failed", "canceled", "stuck")

# How an attempt ended ("running" while it has not; "unspecified" for a value this SDK does not know).
AttemptOutcome = Literal["running", "succeeded", "failed", "timed_out", "lost", "canceled", "given_back", "snoozed", "unspecified"]
# What holds a pending task back, as the first of these that applies (see WaitReason in task.proto).
WaitReason = Literal[
    "not_due", "queue_paused", "no_worker", "queue_limit", "key_limit", "global_limit", "rate_limit", "workers_busy"
]

_STATUS_BY_NUMBER: dict[int, TaskStatus] = {i + 1: name for i, name in enumerate(TASK_STATUSES)}
_NUMBER_BY_STATUS: dict[str, int] = {name: number for number, name in _STATUS_BY_NUMBER.items()}


_OUTCOME_BY_NUMBER: dict[int, AttemptOutcome] = {
    task_pb2.ATTEMPT_OUTCOME_RUNNING: "running",
    task_pb2.ATTEMPT_OUTCOME_SUCCEEDED: "succeeded",
    task_pb2.ATTEMPT_OUTCOME_FAILED: "failed",
    task_pb2.ATTEMPT_OUTCOME_TIMED_OUT: "timed_out",
    task_pb2.ATTEMPT_OUTCOME_LOST: "lost",
    task_pb2.ATTEMPT_OUTCOME_CANCELED: "canceled",
    task_pb2.ATTEMPT_OUTCOME_GIVEN_BACK: "given_back",
    task_pb2.ATTEMPT_OUTCOME_SNOOZED: "snoozed",
}
_WAIT_REASON_BY_NUMBER: dict[int, WaitReason] = {
    task_pb2.WAIT_REASON_NOT_DUE: "not_due",
    task_pb2.WAIT_REASON_QUEUE_PAUSED: "queue_paused",
    task_pb2.WAIT_REASON_NO_WORKER: "no_worker",
    task_pb2.WAIT_REASON_QUEUE_LIMIT: "queue_limit",
    task_pb2.WAIT_REASON_GLOBAL_LIMIT: "global_limit",
    task_pb2.WAIT_REASON_WORKERS_BUSY: "workers_busy",
    task_pb2.WAIT_REASON_KEY_LIMIT: "key_limit",
    task_pb2.WAIT_REASON_RATE_LIMIT: "rate_limit",
}


def is_final(status: TaskStatus) -> bool:
    return status in FINAL_STATUSES


def status_name(number: int) -> TaskStatus:
    return _STATUS_BY_NUMBER.get(number, "pending")


def status_number(name: str) -> int | None:
    """The wire value of a status name; None for a string that names none."""
    return _NUMBER_BY_STATUS.get(name)


def status_numbers(names: Sequence[str], what: str = "statuses") -> list[Any]:
    """The wire values of status names, refusing (INVALID_ARGUMENT) a string that names none."""
    numbers: list[Any] = []
    for i, name in enumerate(names):
        number = status_number(name)
        if number is None:
            raise invalid(f'{what}[{i}]: "{name}" is not a status')
        numbers.append(number)
    return numbers


def origin_number(origin: str | None, what: str = "origin") -> Any:
    """The wire value of an origin name, UNSPECIFIED for None; INVALID_ARGUMENT for anything else."""
    origins = {None: task_pb2.ORIGIN_UNSPECIFIED, "user": task_pb2.ORIGIN_USER, "system": task_pb2.ORIGIN_SYSTEM}
    if origin not in origins:
        raise invalid(f'{what}: "{origin}" is not user or system')
    return origins[origin]


def seconds(d: duration_pb2.Duration) -> float:
    return float(d.seconds + d.nanos / 1e9)


def duration(secs: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(secs * 1e9))
    return d


def timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when.astimezone(UTC) if when.tzinfo else when)
    return ts


def _time(ts: timestamp_pb2.Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


@dataclass(frozen=True)
class LogStep:
    seq: int
    time: datetime
    message: str
    attempt: int


@dataclass(frozen=True)
class AttemptInfo:
    """One attempt: a lease of the task to a worker, from its start to its end."""

    number: int
    worker: str
    # The server replica that held the worker's session ("" for attempts recorded before replicas were).
    replica: str
    started_at: datetime
    # None while it runs.
    ended_at: datetime | None
    outcome: AttemptOutcome
    # Why it failed, timed out, was lost or was interrupted; "" when it succeeded or runs.
    error: str


@dataclass(frozen=True)
class WaitingInfo:
    """Why a pending task is not running yet: the reason, and the same for people (naming the queue, the limit or the due time)."""

    reason: WaitReason
    detail: str


@dataclass
class TaskInfo:
    id: str
    type: str
    queue: str
    status: TaskStatus
    title: str
    # The title to show: the title, else "Untitled" (Active list) or one made from the type.
    display_title: str
    priority: int
    priority_band: Literal["low", "medium", "high"]
    origin: TaskOrigin
    initiator: str
    # The initiator to show: the initiator, else "Scheduler" for a system task and "API" for a user task.
    display_initiator: str
    node_id: str
    params: JsonObject
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_try_at: datetime | None
    # When the running attempt times out, or a cancelling task's grace period ends.
    deadline: datetime | None
    worker: str
    status_values: JsonObject
    log: list[LogStep]
    # The handler's result when COMPLETED (None also when the handler returned None).
    result: JsonValue
    error: str
    # Seconds; None when the task was dispatched without one.
    timeout: float | None
    retry_delay: float
    idempotency_key: str
    # The concurrency key given at dispatch; "" when none was.
    concurrency_key: str
    # Every attempt, oldest first (from status(); empty in lists and watches). Attempts given back
    # without counting are listed too, with the number the next attempt reuses.
    attempt_history: list[AttemptInfo]
    # A pending task, from status() and list_active(): why it is not running yet; None otherwise.
    waiting: WaitingInfo | None
    # The task this one retries (made by retry() or retry_many()); "" for a task dispatched as itself.
    retry_of: str = ""
    # The task that retries this one, once it was retried; "" until then.
    retried_as: str = ""


@dataclass(frozen=True)
class QueueInfo:
    name: str
    # None: no limit.
    max_workers: int | None
    pending: int
    running: int
    paused: bool
    timeout: float | None
    retry_delay: float | None
    max_attempts: int | None
    # Seconds the oldest pending task that is due has waited since it became due; 0.0 when none waits.
    oldest_due: float
    # The most tasks of one concurrency key running at once in this queue; None: no limit.
    max_running_per_key: int | None = None
    # Keys that take more than one task per turn when keys take turns, and how many; others take one.
    key_weights: dict[str, int] = field(default_factory=dict)
    # Tasks with at least this priority go before every key's turn; None: turns come first.
    urgent_priority: int | None = None
    # Starts allowed to the whole queue, with the tokens free now; None: no limit.
    rate_limit: RateLimitInfo | None = None
    # Starts allowed to each key (tokens 0.0 here: each key's are in `keys`); None: no limit.
    rate_limit_per_key: RateLimitInfo | None = None
    # The keys with tasks in the queue, the most running first, then the most pending; at most 100.
    keys: list[QueueKeyInfo] = field(default_factory=list)
    # How many keys have tasks pending or running in the queue (`keys` may list fewer).
    key_count: int = 0
    # Due pending tasks held back by max_running_per_key now.
    held_by_key_limit: int = 0
    # Due pending tasks held back by a rate limit (the queue's or their key's) now.
    held_by_rate_limit: int = 0


@dataclass(frozen=True)
class RateLimitInfo:
    """A token bucket: `tasks` starts per `per_ms` milliseconds, up to `burst` at once after a quiet spell."""

    tasks: int
    per_ms: float
    burst: int
    # Tokens free now (a task starts with one); 0.0 in a queue's rate_limit_per_key.
    tokens: float


@dataclass(frozen=True)
class QueueKeyInfo:
    """One concurrency key's tasks in a queue."""

    key: str
    # Its tasks running or cancelling.
    running: int
    # Its tasks waiting, including those scheduled for later.
    pending: int
    # Tokens free now in its rate_limit_per_key bucket; None when the queue has none.
    tokens: float | None


@dataclass(frozen=True)
class QueueList:
    queues: list[QueueInfo]
    # The most tasks running at once across every queue; None: no limit.
    global_max_workers: int | None
    running: int


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    cron: str
    time_zone: str
    type: str
    queue: str
    # "config", "worker" or "builtin".
    source: str
    next_run_at: datetime
    last_run_at: datetime | None
    last_task_id: str
    last_status: TaskStatus | None


@dataclass(frozen=True)
class WorkerInfo:
    """
    A connected worker session, on any replica, as its replica last recorded it: `credits` and
    `last_heard_at` are as of the replica's last heartbeat of the session, the running tasks as of the call.
    """

    session_id: str
    name: str
    replica_id: str
    task_types: list[str]
    # Empty: every queue.
    queues: list[str]
    # As the worker declared it.
    concurrency: int
    # Granted and not yet used.
    credits: int
    # How many tasks it runs (running or cancelling), and their ids, oldest lease first (at most 100).
    running: int
    running_task_ids: list[str]
    connected_at: datetime
    # When the worker last sent anything; None before its replica first recorded it.
    last_heard_at: datetime | None
    # When its replica last confirmed the session.
    heartbeat_at: datetime


@dataclass(frozen=True)
class TaskPage:
    """One page of a list: its tasks (without params, status values or log) and the next page's token, "" on the last."""

    tasks: list[TaskInfo]
    next_page_token: str


@dataclass(frozen=True)
class TaskFilter:
    """
    The tasks a bulk action (interrupt_many, retry_many) applies to: a task matches when it matches every
    field given. At least one must be given (the server refuses an empty filter with INVALID_ARGUMENT);
    to act on every task, name the statuses.
    """

    queue: str | None = None
    type: str | None = None
    # Only tasks whose type starts with this text (case matters).
    type_prefix: str | None = None
    # Only the tasks with these ids, at most 500: a selection.
    ids: Sequence[str] | None = None
    # Only tasks in these statuses; default every status the action applies to: pending and running for
    # interrupt_many, failed, canceled and stuck for retry_many.
    statuses: Sequence[TaskStatus] | None = None
    # Only tasks created at or after this time (naive datetimes are taken as local time).
    created_after: datetime | None = None
    # Only tasks created before this time.
    created_before: datetime | None = None
    # Only tasks of this origin; default both.
    origin: TaskOrigin | None = None


@dataclass(frozen=True)
class BulkResult:
    """What interrupt_many() or retry_many() did, or with dry_run would do."""

    # The tasks acted on; with dry_run, the tasks that match, at most the limit.
    count: int
    # Whether matching tasks remain beyond this call's: call again to go on.
    more_remain: bool


@dataclass(frozen=True)
class AuditEntry:
    """One call that changed tasks: a retry, or a bulk action that was not a dry run."""

    # Increasing with each entry.
    id: str
    # When the call began.
    time: datetime
    # The name of the auth token used; "anonymous" when the server runs without auth.
    actor: str
    # "retry", "interrupt_many" or "retry_many".
    action: str
    # What was asked: the task id and its retry's id (task_id, retry_id), or the filter, limit and reason.
    params: JsonObject
    # How many tasks the call changed.
    affected: int


@dataclass(frozen=True)
class AuditPage:
    """One page of the audit log, newest first, and the next page's token, "" on the last."""

    entries: list[AuditEntry]
    next_page_token: str


@dataclass(frozen=True)
class StatusCount:
    """How many tasks are in one status."""

    status: TaskStatus
    # At most 10,000: the server stops counting there.
    count: int
    # True when there are more than `count`.
    more: bool


@dataclass(frozen=True)
class StatsSample:
    """One queue at one sampling time: its depth then, and the tasks that finished since its sample before."""

    time: datetime
    queue: str
    # Tasks waiting (due or not) at that time.
    pending: int
    # Tasks running or being interrupted at that time.
    running: int
    # Tasks that finished in each final status since the queue's sample before.
    completed: int
    failed: int
    canceled: int
    stuck: int


@dataclass(frozen=True)
class Stats:
    """The samples of a window, oldest first, and how often the server samples (seconds)."""

    interval: float
    samples: list[StatsSample]


@dataclass(frozen=True)
class SnapshotEvent:
    """The first event of a watch: the task as it is, its log holding the steps after `after_seq`."""

    type: ClassVar[Literal["snapshot"]] = "snapshot"
    task: TaskInfo


@dataclass(frozen=True)
class LogEvent:
    type: ClassVar[Literal["log"]] = "log"
    step: LogStep


@dataclass(frozen=True)
class StatusValueEvent:
    type: ClassVar[Literal["status_value"]] = "status_value"
    key: str
    value: JsonValue


@dataclass(frozen=True)
class StatusEvent:
    type: ClassVar[Literal["status"]] = "status"
    status: TaskStatus
    attempts: int
    worker: str
    result: JsonValue
    error: str
    # When the change happened; None when a resumed watch made it up from a snapshot and the task does not say.
    time: datetime | None = field(default=None)


WatchEvent: TypeAlias = SnapshotEvent | LogEvent | StatusValueEvent | StatusEvent


def log_step_from_pb(e: task_pb2.LogEntry) -> LogStep:
    return LogStep(seq=e.seq, time=_time(e.time), message=e.message, attempt=e.attempt)


def attempt_from_pb(a: task_pb2.Attempt) -> AttemptInfo:
    return AttemptInfo(
        number=a.number,
        worker=a.worker,
        replica=a.replica,
        started_at=_time(a.started_at),
        ended_at=_time(a.ended_at) if a.HasField("ended_at") else None,
        outcome=_OUTCOME_BY_NUMBER.get(a.outcome, "unspecified"),
        error=a.error,
    )


def task_from_pb(t: task_pb2.Task) -> TaskInfo:
    def when(name: str) -> datetime | None:
        return _time(getattr(t, name)) if t.HasField(name) else None

    band = {task_pb2.PRIORITY_BAND_HIGH: "high", task_pb2.PRIORITY_BAND_MEDIUM: "medium"}.get(t.priority_band, "low")
    return TaskInfo(
        id=t.id,
        type=t.type,
        queue=t.queue,
        status=status_name(t.status),
        title=t.title,
        display_title=t.display_title,
        priority=t.priority,
        priority_band=band,  # type: ignore[arg-type]
        origin="system" if t.origin == task_pb2.ORIGIN_SYSTEM else "user",
        initiator=t.initiator,
        display_initiator=t.display_initiator,
        node_id=t.node_id,
        params=from_struct(t.params),
        attempts=t.attempts,
        max_attempts=t.max_attempts,
        created_at=_time(t.created_at),
        started_at=when("started_at"),
        finished_at=when("finished_at"),
        next_try_at=when("next_try_at"),
        deadline=when("deadline"),
        worker=t.worker,
        status_values=from_struct(t.status_values),
        log=[log_step_from_pb(e) for e in t.log],
        result=from_value(t.result) if t.HasField("result") else None,
        error=t.error,
        timeout=seconds(t.timeout) if t.HasField("timeout") else None,
        retry_delay=seconds(t.retry_delay),
        idempotency_key=t.idempotency_key,
        concurrency_key=t.concurrency_key,
        attempt_history=[attempt_from_pb(a) for a in t.attempt_history],
        waiting=_waiting(t),
        retry_of=t.retry_of,
        retried_as=t.retried_as,
    )


def _waiting(t: task_pb2.Task) -> WaitingInfo | None:
    """Why a pending task waits; None when it does not (or the server gave a reason this SDK does not know)."""
    reason = _WAIT_REASON_BY_NUMBER.get(t.wait_reason)
    return WaitingInfo(reason, t.wait_detail) if reason else None


def queue_from_pb(q: task_queue_pb2.Queue) -> QueueInfo:
    return QueueInfo(
        name=q.name,
        max_workers=q.max_workers if q.HasField("max_workers") else None,
        pending=q.pending,
        running=q.running,
        paused=q.paused,
        timeout=seconds(q.timeout) if q.HasField("timeout") else None,
        retry_delay=seconds(q.retry_delay) if q.HasField("retry_delay") else None,
        max_attempts=q.max_attempts if q.HasField("max_attempts") else None,
        oldest_due=seconds(q.oldest_due_age),
        max_running_per_key=q.max_running_per_key if q.HasField("max_running_per_key") else None,
        key_weights=dict(q.key_weights),
        urgent_priority=q.urgent_priority if q.HasField("urgent_priority") else None,
        rate_limit=_rate_limit(q.rate_limit) if q.HasField("rate_limit") else None,
        rate_limit_per_key=_rate_limit(q.rate_limit_per_key) if q.HasField("rate_limit_per_key") else None,
        keys=[
            QueueKeyInfo(k.key, k.running, k.pending, k.tokens if k.HasField("tokens") else None) for k in q.keys
        ],
        key_count=q.key_count,
        held_by_key_limit=q.held_by_key_limit,
        held_by_rate_limit=q.held_by_rate_limit,
    )


def _rate_limit(r: task_queue_pb2.RateLimit) -> RateLimitInfo:
    per_ms = seconds(r.per) * 1000 if r.HasField("per") else 0.0
    return RateLimitInfo(tasks=r.tasks, per_ms=per_ms, burst=r.burst, tokens=r.tokens)


def schedule_from_pb(s: task_queue_pb2.Schedule) -> ScheduleInfo:
    return ScheduleInfo(
        name=s.name,
        cron=s.cron,
        time_zone=s.time_zone,
        type=s.type,
        queue=s.queue,
        source=s.source,
        next_run_at=_time(s.next_run_at),
        last_run_at=_time(s.last_run_at) if s.HasField("last_run_at") else None,
        last_task_id=s.last_task_id,
        last_status=None if s.last_status == task_pb2.TASK_STATUS_UNSPECIFIED else status_name(s.last_status),
    )


def worker_from_pb(w: task_queue_pb2.ConnectedWorker) -> WorkerInfo:
    return WorkerInfo(
        session_id=w.session_id,
        name=w.name,
        replica_id=w.replica_id,
        task_types=list(w.task_types),
        queues=list(w.queues),
        concurrency=w.concurrency,
        credits=w.credits,
        running=w.running,
        running_task_ids=list(w.running_task_ids),
        connected_at=_time(w.connected_at),
        last_heard_at=_time(w.last_heard_at) if w.HasField("last_heard_at") else None,
        heartbeat_at=_time(w.heartbeat_at),
    )


def task_filter_to_pb(f: TaskFilter) -> task_queue_pb2.TaskFilter:
    """The wire filter; a status or origin name the wire has no value for is refused here, not sent as "any"."""
    for name in ("ids", "statuses"):
        # A string is a sequence of strings too: one id given bare would be sent as its characters.
        if isinstance(getattr(f, name), str):
            raise invalid(f"filter.{name}: a string, not a list of them")
    pb = task_queue_pb2.TaskFilter(
        queue=f.queue or "",
        type=f.type or "",
        type_prefix=f.type_prefix or "",
        ids=list(f.ids or ()),
        statuses=status_numbers(f.statuses or (), "filter.statuses"),
        origin=origin_number(f.origin, "filter.origin"),
    )
    if f.created_after is not None:
        pb.created_after.CopyFrom(timestamp(f.created_after))
    if f.created_before is not None:
        pb.created_before.CopyFrom(timestamp(f.created_before))
    return pb


def audit_entry_from_pb(e: task_queue_pb2.AuditEntry) -> AuditEntry:
    return AuditEntry(
        id=e.id, time=_time(e.time), actor=e.actor, action=e.action, params=from_struct(e.params), affected=e.affected
    )


def status_count_from_pb(c: task_queue_pb2.StatusCount) -> StatusCount:
    return StatusCount(status=status_name(c.status), count=c.count, more=c.more)


def stats_from_pb(res: task_queue_pb2.GetStatsResponse) -> Stats:
    samples = [
        StatsSample(
            time=_time(s.time),
            queue=s.queue,
            pending=s.pending,
            running=s.running,
            completed=s.completed,
            failed=s.failed,
            canceled=s.canceled,
            stuck=s.stuck,
        )
        for s in res.samples
    ]
    return Stats(interval=seconds(res.interval), samples=samples)


def watch_event_from_pb(r: task_queue_pb2.WatchTaskResponse) -> WatchEvent | None:
    kind = r.WhichOneof("event")
    if kind == "snapshot":
        return SnapshotEvent(task_from_pb(r.snapshot))
    if kind == "log_entry":
        return LogEvent(log_step_from_pb(r.log_entry))
    if kind == "status_value":
        return StatusValueEvent(r.status_value.key, from_value(r.status_value.value))
    if kind == "status_change":
        c = r.status_change
        return StatusEvent(
            status=status_name(c.status),
            attempts=c.attempts,
            worker=c.worker,
            result=from_value(c.result) if c.HasField("result") else None,
            error=c.error,
            time=_time(c.time) if c.HasField("time") else None,
        )
    return None
