/**
 * The engine's own vocabulary: tasks, leases, schedules, queues and sessions, and the shapes its SQL
 * statements take and return. The statements in sql/ import their types from here (only the pg row
 * shapes private to one statement module stay beside it). Nothing here knows about gRPC or protobuf.
 */
import type { FinishedAs } from "./lease-types.js";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type ActiveStatus = "pending" | "running" | "cancelling";
export type FinalStatus = "completed" | "failed" | "canceled" | "stuck";
export type TaskStatus = ActiveStatus | FinalStatus;
type Origin = "user" | "system";
export type RetryBackoff = "fixed" | "exponential";

const FINAL_STATUSES: readonly FinalStatus[] = ["completed", "failed", "canceled", "stuck"];
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
  /** The concurrency key given at dispatch; null when none was. */
  concurrencyKey: string | null;
  /** The trace context of the dispatch; absent or null outside any trace. */
  trace?: TraceContext | null;
}

/** A W3C trace context as stored with a task and handed out with its leases (see tracing.ts). */
export interface TraceContext {
  /** A W3C traceparent, such as 00-<trace id>-<span id>-01. */
  parent: string;
  /** The W3C tracestate that goes with it; null when there is none. */
  state: string | null;
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
  /** The concurrency key given at dispatch; null when none was. */
  concurrencyKey: string | null;
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
  /** The finished task this one retries; null for a task dispatched as itself. */
  retryOf: string | null;
  /** The task that retries this finished one; null until it is retried (always, while active). */
  retriedAs: string | null;
  /** A pending task in Status and ListActive: why it is not running yet. */
  waiting?: Waiting;
}

/** Why a pending task is not running yet (engine/waiting.ts). */
export type WaitReason =
  | "not_due"
  | "queue_paused"
  | "no_worker"
  | "queue_limit"
  | "key_limit"
  | "global_limit"
  | "rate_limit"
  | "workers_busy";

export interface Waiting {
  reason: WaitReason;
  /** For people: the queue, the limit, the due time. */
  detail: string;
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
  /** A running change: the replica holding the worker's session (unset before migration 009). */
  replica?: string;
  /** A change that ended an attempt, or the final change: how it came about (unset before migration 009). */
  ended?: EndedBy;
}

/**
 * How a change came about: the worker's finish, a timeout, a lost worker or session, a server shutdown,
 * a declined, snoozed or undelivered lease, or an interrupt of a pending task.
 */
export type EndedBy = "finish" | "timeout" | "lost" | "shutdown" | "declined" | "snoozed" | "undelivered" | "interrupt";

/** How an attempt ended ("running" while it has not). */
export type AttemptOutcome = "running" | "succeeded" | "failed" | "timed_out" | "lost" | "canceled" | "given_back" | "snoozed";

/** One attempt: a lease of the task to a worker, from its start to its end. */
export interface Attempt {
  number: number;
  worker: string;
  /** "" for attempts recorded before replicas were. */
  replica: string;
  startedAt: Date;
  endedAt: Date | null;
  outcome: AttemptOutcome;
  /** Why it failed, timed out, was lost or interrupted; "" when it succeeded or runs. */
  error: string;
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
  concurrencyKey: string | null;
  /** When the task was created, in epoch milliseconds. */
  createdAtMs: number;
  /** When the task became due (its run_at, or the end of its retry delay), in epoch milliseconds. */
  dueAtMs: number;
  /** The trace context the worker continues: the stored one, or the lease span's once it is recorded. */
  trace: TraceContext | null;
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
  /** As the worker declared it: informational, leases follow credits. */
  concurrency: number;
  /** Task type → its default timeout (null: none declared). */
  taskTypes: Map<string, number | null>;
  /** Queues to take tasks from; empty means all. */
  queues: string[];
  /** Types the worker wants run on a cron schedule (the schedule is named after the type). */
  schedules: { type: string; cron: string; timeZone: string }[];
}

// What claims take and return, and how leases end: lease-types.ts.
export type {
  Claimed,
  FinishedAs,
  FinishInput,
  KeyCursors,
  KeyShares,
  LeaseGroup,
  LeaseTimeouts,
  QueueLimits,
  RateLimit,
  RateLimits,
  ReleaseInput,
  WakeOnFree,
} from "./lease-types.js";

/** A task the reaper ended or sent back to the queue. */
export interface RecoveredTask {
  id: string;
  status: FinishedAs;
}

/** A worker session as its row records it. */
export interface SessionRow {
  id: string;
  replicaId: string;
  workerName: string;
  taskTypes: string[];
  queues: string[];
  /** Task type → the timeout (ms) the worker declared for it. */
  typeTimeouts: JsonObject;
  /** As the worker declared it (informational). */
  concurrency: number;
  connectedAt: Date;
}

/** A connected worker session, on any replica, as ListWorkers shows it. */
export interface WorkerInfo {
  sessionId: string;
  name: string;
  replicaId: string;
  taskTypes: string[];
  queues: string[];
  concurrency: number;
  /** Credits held at the replica's last heartbeat of the session. */
  credits: number;
  /** Tasks it runs now (running or cancelling). */
  running: number;
  /** The ids of the tasks it runs, at most 100 of them (sql/sessions.ts), oldest lease first. */
  runningTaskIds: string[];
  connectedAt: Date;
  /** When the worker last sent anything, as of its replica's last heartbeat; null before the first. */
  heardAt: Date | null;
  /** When its replica last confirmed the session in the database. */
  heartbeatAt: Date;
}

/** What one queue holds now, and whether it is paused. */
export interface QueueCounts {
  pending: number;
  running: number;
  paused: boolean;
  /** How long the oldest pending task that is due has been due, in ms; 0 when none is. */
  oldestDueMs: number;
  /** Keys with tasks pending or running in the queue. */
  keyCount: number;
  /** The keys with the most tasks running, then pending; at most KEYS_LISTED. */
  keys: KeyCounts[];
  /** Due pending tasks whose key runs max_running_per_key tasks already. */
  heldByKeyLimit: number;
  /** Due pending tasks (not held by their key's limit) whose queue's or key's rate limit has no token now. */
  heldByRateLimit: number;
  /** The queue's rate limit's tokens now; null when it has none. */
  rateTokens: number | null;
}

/** One concurrency key's tasks in a queue. */
export interface KeyCounts {
  key: string;
  pending: number;
  running: number;
  /** Its rate_limit_per_key bucket's tokens now; null when the queue has none. */
  tokens: number | null;
}

/** The columns the live queue's list sorts by. */
export type ActiveSortColumn =
  | "id"
  | "status"
  | "title"
  | "created_at"
  | "started_at"
  | "attempts"
  | "priority"
  | "type"
  | "origin";

/** One page of the live queue to read: filters (null: any), sort, and where the page starts. */
export interface ActiveQuery {
  id: string | null;
  titleSearch: string | null;
  type: string | null;
  /** Only types that start with this text. */
  typePrefix: string | null;
  queue: string | null;
  statuses: ActiveStatus[];
  createdAfter: Date | null;
  createdBefore: Date | null;
  sortBy: ActiveSortColumn;
  descending: boolean;
  limit: number;
  /** The sort value and id of the last row of the previous page. */
  after: { value: string; id: string } | null;
}

/** One page of history to read, newest first: filters (null: any) and where the page starts. */
export interface HistoryQuery {
  origin: Origin | null;
  statuses: TaskStatus[];
  type: string | null;
  /** Only types that start with this text. */
  typePrefix: string | null;
  queue: string | null;
  createdAfter: Date | null;
  createdBefore: Date | null;
  limit: number;
  after: { createdAt: Date; id: string } | null;
}

/**
 * The tasks a bulk action applies to: each field that is set must match (null: any). `statuses` are
 * those the action may take (empty: every one it may).
 */
export interface TaskFilter {
  queue: string | null;
  type: string | null;
  /** Only types that start with this text. */
  typePrefix: string | null;
  statuses: TaskStatus[];
  createdAfter: Date | null;
  createdBefore: Date | null;
  origin: Origin | null;
  /** Only these tasks (empty: any). */
  ids: string[];
}

/** What CountTasks narrows to (null: any). */
export interface CountQuery {
  queue: string | null;
  typePrefix: string | null;
  origin: Origin | null;
}

/** How many tasks are in one status; counting stops after COUNT_CAP and `more` says so. */
export interface StatusCount {
  status: TaskStatus;
  count: number;
  more: boolean;
}

/** One queue at one sampling time: its depth then, and its tasks finished since its sample before. */
export interface StatsSample {
  at: Date;
  queue: string;
  pending: number;
  running: number;
  completed: number;
  failed: number;
  canceled: number;
  stuck: number;
}

/** A bulk action: which tasks, at most how many, whether only to count them, and who asks. */
export interface BulkRequest {
  filter: TaskFilter;
  limit: number;
  dryRun: boolean;
  /** Who asked, for the audit log. */
  actor: string;
}

export interface BulkResult {
  /** Tasks changed; with dryRun, tasks that match, at most the limit. */
  count: number;
  /** Whether matching tasks remain beyond what the call acted on (or, with dryRun, would). */
  moreRemain: boolean;
}

/** What an audited call did: "retry", "interrupt_many" or "retry_many". */
export type AuditAction = "retry" | "interrupt_many" | "retry_many";

/**
 * The audit row of a statement that changes tasks: who asked, what, with which parameters. `id` names
 * the row an earlier batch of the same call wrote, to count up; null for a new row.
 */
export interface AuditRecord {
  id: string | null;
  actor: string;
  action: AuditAction;
  params: JsonObject;
}

/** One row of the audit log. */
export interface AuditEntry {
  id: string;
  at: Date;
  actor: string;
  action: AuditAction;
  params: JsonObject;
  affected: number;
}

/** Who declared a schedule: the config, a worker's hello, or the engine's built-in maintenance. */
export type ScheduleSource = "config" | "worker" | "builtin";

/** A schedule as declared, every default applied. */
export interface ScheduleDef {
  name: string;
  cron: string;
  timeZone: string;
  type: string;
  queue: string;
  params: JsonObject;
  title: string;
  priority: number;
  source: ScheduleSource;
}

/** A schedule locked for firing its due tick. */
export interface DueSchedule extends ScheduleDef {
  /** The tick due now: the schedule's next_run_at. */
  tick: Date;
  /** Whether the run of the last fired tick is still pending or running. */
  previousActive: boolean;
  /** Whether a connected worker session (on any replica) declared the schedule's task type. */
  workerConnected: boolean;
}

/** A schedule as ListSchedules shows it: its next and last run, and the last run's status. */
export interface ScheduleRow extends ScheduleDef {
  nextRunAt: Date;
  lastRunAt: Date | null;
  lastTaskId: string | null;
  lastStatus: TaskStatus | null;
}
