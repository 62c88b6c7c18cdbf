"""
The SDK's errors. Everything the SDK raises is a TaskqError carrying a gRPC status code (a
grpc.StatusCode), with the original exception as __cause__ where there is one, so one
`except TaskqError` catches them all. The subclasses say more:

    TaskFailedError     result() of a task that ended FAILED, CANCELED or STUCK; carries the task
    TaskCancelled       raised by ctx.sleep() and ctx.raise_if_cancelled(): the attempt must stop
    RetryableError      raised by a handler to ask for another attempt
    TaskSnoozed         raised by ctx.snooze(): run again later, this attempt not counted
    WorkerRefusedError  raised by Worker.start() and run(): the server refused the worker before ever
                        welcoming it, and connecting again cannot help
    JsonValueError      a value taskq cannot carry as JSON (NaN, an infinity, ...); also a ValueError

Errors from a call keep the server's code (NOT_FOUND, INVALID_ARGUMENT, UNAUTHENTICATED, ...).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import grpc

if TYPE_CHECKING:
    from .types import TaskInfo, TaskStatus

StatusCode = grpc.StatusCode


class TaskqError(Exception):
    """An error of the SDK or of a call: `code` is the gRPC status code, `message` the text."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The code's name, such as "NOT_FOUND"."""
        return str(self.code.name)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code_name}, {self.message!r})"

    @staticmethod
    def from_rpc_error(err: grpc.RpcError) -> TaskqError:
        """The TaskqError for a failed call: its code and details (UNKNOWN when it has none)."""
        code = err.code() if hasattr(err, "code") else None
        details = err.details() if hasattr(err, "details") else None
        return TaskqError(code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN, details or str(err))


# The code of each way a task can end other than COMPLETED.
_FAILED_CODES: dict[str, grpc.StatusCode] = {
    # The handler's error, as gRPC reports an error raised by application code.
    "failed": grpc.StatusCode.UNKNOWN,
    "canceled": grpc.StatusCode.CANCELLED,
    # Timed out, or lost its worker, on its last attempt.
    "stuck": grpc.StatusCode.DEADLINE_EXCEEDED,
}


class TaskFailedError(TaskqError):
    """A task ended FAILED, CANCELED or STUCK: `status` says which, `task` is the task as it ended."""

    def __init__(self, task: TaskInfo) -> None:
        detail = f": {task.error}" if task.error else ""
        super().__init__(_FAILED_CODES.get(task.status, grpc.StatusCode.UNKNOWN), f"task {task.id} ended {task.status}{detail}")
        self.task = task
        self.status: TaskStatus = task.status


CancelReason = Literal["interrupted", "timed_out", "shutdown", "lease_lost", "worker_stopping"]

_CANCELS: dict[str, tuple[str, grpc.StatusCode]] = {
    "interrupted": ("the task was interrupted", grpc.StatusCode.CANCELLED),
    "timed_out": ("the attempt timed out", grpc.StatusCode.DEADLINE_EXCEEDED),
    "shutdown": ("the server is shutting down", grpc.StatusCode.UNAVAILABLE),
    # ABORTED, as the server answers a worker that acts on a lease it no longer holds.
    "lease_lost": ("the lease was lost: the connection to the server ended", grpc.StatusCode.ABORTED),
    "worker_stopping": ("the worker is stopping", grpc.StatusCode.UNAVAILABLE),
}


class TaskCancelled(TaskqError):
    """The attempt must stop: `reason` says why (ctx.cancel_reason holds the same)."""

    def __init__(self, reason: CancelReason) -> None:
        message, code = _CANCELS[reason]
        super().__init__(code, message)
        self.reason: CancelReason = reason


class RetryableError(TaskqError):
    """
    Raised by a handler: this attempt failed in a way that may pass. The task runs again while attempts
    remain, after `delay` seconds when given (else the task's retry delay). Its code is UNAVAILABLE,
    gRPC's "try again".
    """

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, message)
        self.delay = delay


class TaskSnoozed(TaskqError):
    """
    Raised by ctx.snooze(seconds) (or by a handler itself): this attempt does not count, and the task
    runs again once `delay` seconds have passed (held to 0 to 7 days when the worker sends it; NaN as
    0). For a handler that finds it cannot proceed yet. Its code is UNAVAILABLE, gRPC's "try again".
    """

    def __init__(self, delay: float) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, f"snoozed for {delay:.15g} s")
        self.delay = delay


class WorkerRefusedError(TaskqError):
    """
    The server refused the worker before it was ever welcomed: a bad or missing token
    (UNAUTHENTICATED), a token without the worker role (PERMISSION_DENIED), a hello it does not take,
    such as an undefined queue (INVALID_ARGUMENT), a protocol error (FAILED_PRECONDITION), or a server
    that is not taskq (UNIMPLEMENTED). `code` is the server's, `message` "the server refused the
    worker: " and the server's text; the worker has stopped.
    """


class JsonValueError(TaskqError, ValueError):
    """
    A value taskq cannot carry as JSON: NaN or an infinity, an int beyond ±2^53, a NUL character, a
    key that is not a string, a type JSON has no place for. Raised where the value is given (dispatch
    params, set_status, a handler's result); INVALID_ARGUMENT, and a ValueError too.
    """

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message)


def invalid(message: str) -> TaskqError:
    return TaskqError(grpc.StatusCode.INVALID_ARGUMENT, message)
