"""
The taskq SDK for Python: a client that dispatches and follows tasks (TaskClient), and a worker that
runs them (Worker). It depends only on grpcio and protobuf. Everything it takes and returns is its own
type; everything it raises is a TaskqError.
"""
from ._connection import DEFAULT_URL, TlsOptions
from ._json import INTEGER_LIMIT, JsonObject, JsonValue
from ._lease_runner import MAX_RESULT_BYTES
from ._temp_dirs import DEFAULT_TEMP_TTL_S
from .client import DEFAULT_CALL_TIMEOUT_S, DispatchItem, TaskClient, TaskHandle
from .context import TaskContext
from .errors import (
    CancelReason,
    JsonValueError,
    RetryableError,
    StatusCode,
    TaskCancelled,
    TaskFailedError,
    TaskqError,
    TaskSnoozed,
    WorkerRefusedError,
)
from .types import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    TASK_STATUSES,
    AttemptInfo,
    AttemptOutcome,
    LogEvent,
    LogStep,
    QueueInfo,
    QueueList,
    ScheduleInfo,
    SnapshotEvent,
    StatusEvent,
    StatusValueEvent,
    TaskInfo,
    TaskOrigin,
    TaskPage,
    TaskStatus,
    WaitingInfo,
    WaitReason,
    WatchEvent,
    WorkerInfo,
)
from .worker import DEFAULT_CONCURRENCY, DEFAULT_RECONNECT, DEFAULT_STOP_GRACE_S, TEMP_CLEANUP_TYPE, Handler, Worker

__version__ = "0.2.0"

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_CALL_TIMEOUT_S",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_RECONNECT",
    "DEFAULT_STOP_GRACE_S",
    "DEFAULT_TEMP_TTL_S",
    "DEFAULT_URL",
    "FINAL_STATUSES",
    "INTEGER_LIMIT",
    "MAX_RESULT_BYTES",
    "TASK_STATUSES",
    "TEMP_CLEANUP_TYPE",
    "AttemptInfo",
    "AttemptOutcome",
    "CancelReason",
    "DispatchItem",
    "Handler",
    "JsonObject",
    "JsonValueError",
    "JsonValue",
    "LogEvent",
    "LogStep",
    "QueueInfo",
    "QueueList",
    "RetryableError",
    "ScheduleInfo",
    "SnapshotEvent",
    "StatusCode",
    "StatusEvent",
    "StatusValueEvent",
    "TaskCancelled",
    "TaskClient",
    "TaskContext",
    "TaskFailedError",
    "TaskHandle",
    "TaskInfo",
    "TaskOrigin",
    "TaskPage",
    "TaskSnoozed",
    "TaskStatus",
    "TaskqError",
    "TlsOptions",
    "WaitReason",
    "WaitingInfo",
    "WatchEvent",
    "Worker",
    "WorkerInfo",
    "WorkerRefusedError",
]
