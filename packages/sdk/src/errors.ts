/**
 * The SDK's errors. Everything the SDK throws, and every error class it exports, is a TaskqError: a
 * gRPC code (Code, re-exported from connect) and, where there is one, the original error as `cause`,
 * so one `instanceof TaskqError` catches them all. The subclasses say more:
 *
 *   TaskFailedError     result() of a task that ended FAILED, CANCELED or STUCK; carries the task
 *   TaskAbortedError    the reason of a handler's aborted signal: why the attempt must stop
 *   RetryableError      thrown by a handler to ask for another attempt
 *   WorkerRefusedError  Worker.start() when the server refuses the worker for good (token, hello)
 *
 * Errors from a call keep the server's code (NotFound, InvalidArgument, Unauthenticated, ...).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskInfo, TaskStatusName } from "./types.js";

export { Code };

export class TaskqError extends Error {
  constructor(
    message: string,
    readonly code: Code,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TaskqError";
  }

  /** The code's name, such as "NotFound" or "InvalidArgument". */
  get codeName(): string {
    return Code[this.code];
  }

  /** `err` itself when it is a TaskqError; else one with the code a call's error carries (Unknown for others), `err` as its cause. */
  static from(err: unknown): TaskqError {
    if (err instanceof TaskqError) return err;
    const ce = ConnectError.from(err);
    return new TaskqError(ce.rawMessage, ce.code, { cause: err });
  }
}

/** The code of each way a task can end other than COMPLETED. */
const FAILED_CODES: Record<TaskStatusName, Code> = {
  // The handler's error, as gRPC reports an error raised by application code.
  failed: Code.Unknown,
  canceled: Code.Canceled,
  // Timed out, or lost its worker, on its last attempt.
  stuck: Code.DeadlineExceeded,
  // Not final: result() never rejects with these.
  pending: Code.Unknown,
  running: Code.Unknown,
  cancelling: Code.Unknown,
  completed: Code.Unknown,
};

/** A task ended FAILED, CANCELED or STUCK: `status` says which, `task` is the task as it ended. */
export class TaskFailedError extends TaskqError {
  readonly status: TaskStatusName;
  constructor(
    readonly task: TaskInfo,
    options?: { cause?: unknown },
  ) {
    super(`task ${task.id} ended ${task.status}${task.error ? `: ${task.error}` : ""}`, FAILED_CODES[task.status], options);
    this.name = "TaskFailedError";
    this.status = task.status;
  }
}

/** Why a handler's AbortSignal fired. */
export type AbortReason = "interrupted" | "timed_out" | "shutdown" | "lease_lost" | "worker_stopping";

const ABORTS: Record<AbortReason, { message: string; code: Code }> = {
  interrupted: { message: "the task was interrupted", code: Code.Canceled },
  timed_out: { message: "the attempt timed out", code: Code.DeadlineExceeded },
  shutdown: { message: "the server is shutting down", code: Code.Unavailable },
  // ABORTED, as the server answers a worker that acts on a lease it no longer holds.
  lease_lost: { message: "the lease was lost: the connection to the server ended", code: Code.Aborted },
  worker_stopping: { message: "the worker is stopping", code: Code.Unavailable },
};

/** The reason of a handler's aborted signal (`ctx.signal.reason`): the attempt must stop. */
export class TaskAbortedError extends TaskqError {
  constructor(
    readonly reason: AbortReason,
    options?: { cause?: unknown },
  ) {
    super(ABORTS[reason].message, ABORTS[reason].code, options);
    this.name = "TaskAbortedError";
  }
}

/**
 * Thrown by a handler: this attempt failed in a way that may pass; retry while attempts remain, after
 * `delayMs` when given (else the task's retry delay). A delay under 0 or over 7 days, the most the
 * protocol takes, is held to 0 or 7 days when the worker sends it. Its code is Unavailable, gRPC's
 * "try again".
 */
export class RetryableError extends TaskqError {
  readonly delayMs: number | undefined;
  constructor(message: string, options?: { delayMs?: number; cause?: unknown }) {
    super(message, Code.Unavailable, { cause: options?.cause });
    this.name = "RetryableError";
    this.delayMs = options?.delayMs;
  }
}

/**
 * Thrown by `ctx.snooze(ms)` (or by a handler itself): this attempt does not count, and the task runs
 * again once `delayMs` has passed (held to 0 ms to 7 days when the worker sends it). For a handler that
 * finds it cannot proceed yet. Its code is Unavailable, gRPC's "try again".
 */
export class TaskSnoozed extends TaskqError {
  readonly delayMs: number;
  constructor(delayMs: number) {
    super(`snoozed for ${delayMs} ms`, Code.Unavailable);
    this.name = "TaskSnoozed";
    this.delayMs = delayMs;
  }
}

/**
 * The codes with which a server refuses a worker for good: connecting again with the same token and
 * hello gets the same answer (a bad or missing token, a token of the wrong role, a bad hello field such
 * as a type name or a cron expression, a protocol violation, a server without the WorkerService).
 */
const REFUSING_CODES: ReadonlySet<Code> = new Set([
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.InvalidArgument,
  Code.FailedPrecondition,
  Code.Unimplemented,
]);

/**
 * Worker.start() rejects with this when the server ended the worker's stream, before welcoming it, with
 * a code that retrying cannot change (see REFUSING_CODES); the worker has stopped. The code and message
 * are the server's; `cause` is the error the stream ended with.
 */
export class WorkerRefusedError extends TaskqError {
  constructor(message: string, code: Code, options?: { cause?: unknown }) {
    super(`the server refused the worker: ${message}`, code, options);
    this.name = "WorkerRefusedError";
  }

  /** A WorkerRefusedError for how a stream ended before its welcome, or null when connecting again may help. */
  static fromStreamEnd(err: unknown): WorkerRefusedError | null {
    const e = TaskqError.from(err);
    return REFUSING_CODES.has(e.code) ? new WorkerRefusedError(e.message, e.code, { cause: err }) : null;
  }
}

/** Runs a call and turns whatever it throws into a TaskqError. */
export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw TaskqError.from(err);
  }
}
