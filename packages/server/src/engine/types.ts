/** The engine's own vocabulary. Nothing here knows about gRPC or protobuf. */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type ActiveStatus = "pending" | "running" | "cancelling";
export type FinalStatus = "completed" | "failed" | "canceled" | "stuck";
export type TaskStatus = ActiveStatus | FinalStatus;
export type Origin = "user" | "system";
export type RetryBackoff = "fixed" | "exponential";

export const FINAL_STATUSES: readonly FinalStatus[] = ["completed", "failed", "canceled", "stuck"];
export const isFinal = (s: TaskStatus): s is FinalStatus => (FINAL_STATUSES as readonly string[]).includes(s);

/** A task to queue, with every default already applied by the caller. */
export interface NewTask {
  type: string;
  queue: string;
  params: JsonObject;
  title: string;
  priority: number;
  origin: Origin;
  initiator: string;
  nodeId: string;
  /** null: decided at lease time (worker's per-type timeout, else the server default). */
  timeoutMs: number | null;
  maxAttempts: number;
  retryDelayMs: number;
  retryBackoff: RetryBackoff;
  /** When the task becomes eligible; null means now. */
  runAt: Date | null;
  idempotencyKey: string | null;
}

export interface DispatchResult {
  id: string;
  /** false when the idempotency key matched an existing task. */
  created: boolean;
}

export interface LogEntry {
  seq: number;
  at: Date;
  message: string;
  attempt: number;
}

/** One task as stored, active or finished. */
export interface TaskRecord {
  id: string;
  type: string;
  queue: string;
  status: TaskStatus;
  priority: number;
  params: JsonObject;
  title: string;
  origin: Origin;
  initiator: string;
  nodeId: string;
  idempotencyKey: string | null;
  attempts: number;
  maxAttempts: number;
  retryDelayMs: number;
  retryBackoff: RetryBackoff;
  timeoutMs: number | null;
  createdAt: Date;
  nextTryAt: Date | null;
  /** While running: when the attempt times out; while cancelling: when the grace period ends. */
  deadlineAt: Date | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  worker: string;
  statusValues: JsonObject;
  logSeq: number;
  result: JsonValue | undefined;
  error: string;
  /** Every status change since the task was created, oldest first. */
  statusChanges: StatusChange[];
}

/** One change of a task's status, recorded by the statement that made it. */
export interface StatusChange {
  status: TaskStatus;
  /** The attempt count after the change. */
  attempts: number;
  /** The worker holding the task (running, cancelling) or that held it last (a final status); "" when pending. */
  worker: string;
  /** The error that came with the change (a failed attempt, an interrupt's reason); "" for none. */
  error: string;
  at: Date;
  /** The task's log sequence at the change: the log steps up to it came before it. */
  logSeq: number;
}

/** One task with its whole log, as Status returns it. */
export interface TaskDetail extends TaskRecord {
  log: LogEntry[];
}

/** A task handed to a worker session. */
export interface LeasedTask {
  id: string;
  leaseToken: string;
  sessionId: string;
  type: string;
  queue: string;
  params: JsonObject;
  /** The length of the params' JSON text (what a message carrying them may cost). */
  paramsJsonLength: number;
  attempt: number;
  maxAttempts: number;
  /** The timeout that applies to this attempt. */
  timeoutMs: number;
  /** When this attempt times out, by the engine's clock. */
  deadlineAt: Date;
  title: string;
  idempotencyKey: string | null;
  createdAt: Date;
  /** When the task became due (its run_at, or the end of its retry delay). */
  dueAt: Date;
}

export type Outcome =
  | { kind: "success"; result: JsonValue }
  | { kind: "failure"; error: string }
  | { kind: "retry"; error: string; delayMs: number | null };

export type FinishResult =
  | { accepted: true; status: "pending" | FinalStatus }
  | { accepted: false; reason: string };

export type CancelReason = "interrupted" | "timed_out" | "shutdown";

/** What a worker says about itself when its session opens. */
export interface WorkerHello {
  workerName: string;
  /** Task type → its default timeout (null: none declared). */
  taskTypes: Map<string, number | null>;
  /** Queues to take tasks from; empty means all. */
  queues: string[];
  /** Types the worker wants run on a cron schedule (the schedule is named after the type). */
  schedules: { type: string; cron: string; timeZone: string }[];
}
