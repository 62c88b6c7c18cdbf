/**
 * The SDK's errors. Every error from a call is a TaskqError carrying the gRPC code and the original
 * error as its cause; a task that ended other than COMPLETED rejects result() with TaskFailedError.
 * Handlers throw RetryableError to ask for another attempt.
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

  static from(err: unknown): TaskqError {
    if (err instanceof TaskqError) return err;
    const ce = ConnectError.from(err);
    return new TaskqError(ce.rawMessage, ce.code, { cause: err });
  }
}

/** A task ended FAILED, CANCELED or STUCK. */
export class TaskFailedError extends Error {
  readonly status: TaskStatusName;
  constructor(readonly task: TaskInfo) {
    super(`task ${task.id} ended ${task.status}${task.error ? `: ${task.error}` : ""}`);
    this.name = "TaskFailedError";
    this.status = task.status;
  }
}

/** Why a handler's AbortSignal fired. */
export type AbortReason = "interrupted" | "timed_out" | "shutdown" | "lease_lost" | "worker_stopping";

/** The reason of a handler's aborted signal (`ctx.signal.reason`): the attempt must stop. */
export class TaskAbortedError extends Error {
  constructor(readonly reason: AbortReason) {
    super(ABORT_MESSAGES[reason]);
    this.name = "TaskAbortedError";
  }
}

const ABORT_MESSAGES: Record<AbortReason, string> = {
  interrupted: "the task was interrupted",
  timed_out: "the attempt timed out",
  shutdown: "the server is shutting down",
  lease_lost: "the lease was lost: the connection to the server ended",
  worker_stopping: "the worker is stopping",
};

/** Thrown by a handler: this attempt failed in a way that may pass; retry while attempts remain. */
export class RetryableError extends Error {
  readonly delayMs: number | undefined;
  constructor(message: string, options?: { delayMs?: number; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.name = "RetryableError";
    this.delayMs = options?.delayMs;
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
