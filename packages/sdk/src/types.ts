/**
 * Plain TypeScript shapes of tasks, queues, schedules and watch events, converted from the wire types:
 * statuses and origins as names, times as Dates, durations in ms, JSON as JSON. Nothing a caller
 * handles needs @taskq/protocol.
 */
import { toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema, timestampDate, durationMs } from "@bufbuild/protobuf/wkt";
import {
  AttemptOutcome,
  Origin,
  PriorityBand,
  RejectReason,
  TaskStatus,
  WaitReason,
  type Attempt,
  type LogEntry as PbLogEntry,
  type Task,
} from "@taskq/protocol";
import type { ConnectedWorker, Queue, RateLimit, Schedule, WatchTaskResponse } from "@taskq/protocol";

export type { JsonObject, JsonValue };

/** Every status, in the order a task goes through them: the active ones, then the final ones. */
export const TASK_STATUSES = ["pending", "running", "cancelling", "completed", "failed", "canceled", "stuck"] as const;
export type TaskStatusName = (typeof TASK_STATUSES)[number];

/** The statuses of a task in the Active list (listActive): waiting, running, or told to stop. */
export const ACTIVE_STATUSES = ["pending", "running", "cancelling"] as const satisfies readonly TaskStatusName[];
export type ActiveStatusName = (typeof ACTIVE_STATUSES)[number];

/** The statuses a task ends in; it changes no more after one. */
export const FINAL_STATUSES = ["completed", "failed", "canceled", "stuck"] as const satisfies readonly TaskStatusName[];
export const isFinalStatus = (s: TaskStatusName): boolean => (FINAL_STATUSES as readonly TaskStatusName[]).includes(s);

/** Who created a task: a user (through the API) or the system (the scheduler). */
export type TaskOrigin = "user" | "system";

const STATUS_NAME: Record<TaskStatus, TaskStatusName | undefined> = {
  [TaskStatus.UNSPECIFIED]: undefined,
  [TaskStatus.PENDING]: "pending",
  [TaskStatus.RUNNING]: "running",
  [TaskStatus.CANCELLING]: "cancelling",
  [TaskStatus.COMPLETED]: "completed",
  [TaskStatus.FAILED]: "failed",
  [TaskStatus.CANCELED]: "canceled",
  [TaskStatus.STUCK]: "stuck",
};

export const statusName = (s: TaskStatus): TaskStatusName => STATUS_NAME[s] ?? "pending";

const STATUS_VALUE = new Map<string, TaskStatus>();
for (const [value, name] of Object.entries(STATUS_NAME)) if (name) STATUS_VALUE.set(name, Number(value) as TaskStatus);
/** The wire value of a status name; undefined for a string that names none. */
export const statusFromName = (name: string): TaskStatus | undefined => STATUS_VALUE.get(name);

/**
 * Why a server refused a worker's message about a lease (a finish, a log step, a status value), which
 * then changed nothing: "not_held" (the session no longer holds that lease: drop every message about
 * it), "invalid" (the message is malformed), "limit" (over a size or count limit), "unspecified" (a
 * server older than these codes, or a code newer than this SDK).
 */
export type RejectCode = "not_held" | "invalid" | "limit" | "unspecified";

const REJECT_CODE: Record<RejectReason, RejectCode> = {
  [RejectReason.UNSPECIFIED]: "unspecified",
  [RejectReason.NOT_HELD]: "not_held",
  [RejectReason.INVALID]: "invalid",
  [RejectReason.LIMIT]: "limit",
};

export const rejectCodeName = (r: RejectReason): RejectCode => REJECT_CODE[r] ?? "unspecified";

export interface LogStep {
  seq: number;
  time: Date;
  message: string;
  attempt: number;
}

export interface TaskInfo {
  id: string;
  type: string;
  queue: string;
  status: TaskStatusName;
  title: string;
  /** The title to show: the title, else "Untitled" (Active list) or one made from the type. */
  displayTitle: string;
  priority: number;
  priorityBand: "low" | "medium" | "high";
  origin: TaskOrigin;
  initiator: string;
  /** The initiator to show: the initiator, else "Scheduler" for a system task and "API" for a user task. */
  displayInitiator: string;
  nodeId: string;
  params: JsonObject;
  attempts: number;
  maxAttempts: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  nextTryAt: Date | null;
  /** When the running attempt times out, or a cancelling task's grace period ends. */
  deadline: Date | null;
  worker: string;
  statusValues: JsonObject;
  log: LogStep[];
  result: JsonValue | undefined;
  error: string;
  timeoutMs: number | null;
  retryDelayMs: number;
  idempotencyKey: string;
  /** The concurrency key given at dispatch; "" when none was. */
  concurrencyKey: string;
  /** Every attempt, oldest first (from status(); empty in lists and watches). */
  attemptHistory: AttemptInfo[];
  /** A pending task, from status() and listActive(): why it is not running yet; null otherwise. */
  waiting: { reason: WaitReasonName; detail: string } | null;
  /** The task this one retries (made by retry() or retryMany()); "" for a task dispatched as itself. */
  retryOf: string;
  /** The task that retries this one, once it was retried; "" until then. */
  retriedAs: string;
}

/** What holds a pending task back (see WaitReason in task.proto). */
export type WaitReasonName =
  | "not_due"
  | "queue_paused"
  | "no_worker"
  | "queue_limit"
  | "key_limit"
  | "global_limit"
  | "rate_limit"
  | "workers_busy";

const WAIT_REASON_NAME: Partial<Record<WaitReason, WaitReasonName>> = {
  [WaitReason.NOT_DUE]: "not_due",
  [WaitReason.QUEUE_PAUSED]: "queue_paused",
  [WaitReason.NO_WORKER]: "no_worker",
  [WaitReason.QUEUE_LIMIT]: "queue_limit",
  [WaitReason.KEY_LIMIT]: "key_limit",
  [WaitReason.GLOBAL_LIMIT]: "global_limit",
  [WaitReason.RATE_LIMIT]: "rate_limit",
  [WaitReason.WORKERS_BUSY]: "workers_busy",
};

/** How an attempt ended ("running" while it has not). */
export type AttemptOutcomeName = "running" | "succeeded" | "failed" | "timed_out" | "lost" | "canceled" | "given_back" | "snoozed" | "unspecified";

/** One attempt: a lease of the task to a worker, from its start to its end. */
export interface AttemptInfo {
  number: number;
  worker: string;
  /** The server replica that held the worker's session ("" for attempts recorded before replicas were). */
  replica: string;
  startedAt: Date;
  endedAt: Date | null;
  outcome: AttemptOutcomeName;
  /** Why it failed, timed out, was lost or interrupted; "" when it succeeded or runs. */
  error: string;
}

const OUTCOME_NAME: Record<AttemptOutcome, AttemptOutcomeName> = {
  [AttemptOutcome.UNSPECIFIED]: "unspecified",
  [AttemptOutcome.RUNNING]: "running",
  [AttemptOutcome.SUCCEEDED]: "succeeded",
  [AttemptOutcome.FAILED]: "failed",
  [AttemptOutcome.TIMED_OUT]: "timed_out",
  [AttemptOutcome.LOST]: "lost",
  [AttemptOutcome.CANCELED]: "canceled",
  [AttemptOutcome.GIVEN_BACK]: "given_back",
  [AttemptOutcome.SNOOZED]: "snoozed",
};

const attemptFromPb = (a: Attempt): AttemptInfo => ({
  number: a.number,
  worker: a.worker,
  replica: a.replica,
  startedAt: a.startedAt ? timestampDate(a.startedAt) : new Date(0),
  endedAt: a.endedAt ? timestampDate(a.endedAt) : null,
  outcome: OUTCOME_NAME[a.outcome] ?? "unspecified",
  error: a.error,
});

export interface QueueInfo {
  name: string;
  /** null: no limit. */
  maxWorkers: number | null;
  pending: number;
  running: number;
  paused: boolean;
  timeoutMs: number | null;
  retryDelayMs: number | null;
  maxAttempts: number | null;
  /** How long the oldest pending task that is due has waited since it became due, in ms; 0 when none waits. */
  oldestDueMs: number;
  /** The most tasks of one concurrency key running at once; null: no limit. */
  maxRunningPerKey: number | null;
  /** Keys that take more than one task per turn, and how many. */
  keyWeights: Record<string, number>;
  /** Tasks with at least this priority go before every key's turn; null: turns come first. */
  urgentPriority: number | null;
  /** Starts allowed to the whole queue, with the tokens free now; null: no limit. */
  rateLimit: RateLimitInfo | null;
  /** Starts allowed to each key (tokens: 0, see keys); null: no limit. */
  rateLimitPerKey: RateLimitInfo | null;
  /** The keys with the most tasks running, then pending; at most 100. */
  keys: QueueKeyInfo[];
  /** Keys with tasks pending or running. */
  keyCount: number;
  /** Due tasks held back by max_running_per_key now. */
  heldByKeyLimit: number;
  /** Due tasks held back by a rate limit now. */
  heldByRateLimit: number;
}

export interface RateLimitInfo {
  tasks: number;
  perMs: number;
  burst: number;
  tokens: number;
}

export interface QueueKeyInfo {
  key: string;
  running: number;
  pending: number;
  /** Tokens free in its rate_limit_per_key bucket; null when the queue has none. */
  tokens: number | null;
}

/** What listQueues returns: every queue, the limit over all of them, and the tasks running in all of them. */
export interface QueueList {
  queues: QueueInfo[];
  /** The most tasks running at once across every queue; null: no limit. */
  globalMaxWorkers: number | null;
  running: number;
}

export function queueFromPb(q: Queue): QueueInfo {
  return {
    name: q.name,
    maxWorkers: q.maxWorkers ?? null,
    pending: q.pending,
    running: q.running,
    paused: q.paused,
    timeoutMs: q.timeout ? durationMs(q.timeout) : null,
    retryDelayMs: q.retryDelay ? durationMs(q.retryDelay) : null,
    maxAttempts: q.maxAttempts ?? null,
    oldestDueMs: q.oldestDueAge ? durationMs(q.oldestDueAge) : 0,
    maxRunningPerKey: q.maxRunningPerKey ?? null,
    keyWeights: { ...q.keyWeights },
    urgentPriority: q.urgentPriority ?? null,
    rateLimit: q.rateLimit ? rateLimitFromPb(q.rateLimit) : null,
    rateLimitPerKey: q.rateLimitPerKey ? rateLimitFromPb(q.rateLimitPerKey) : null,
    keys: q.keys.map((k) => ({ key: k.key, running: k.running, pending: k.pending, tokens: k.tokens ?? null })),
    keyCount: q.keyCount,
    heldByKeyLimit: q.heldByKeyLimit,
    heldByRateLimit: q.heldByRateLimit,
  };
}

const rateLimitFromPb = (r: RateLimit): RateLimitInfo => ({ tasks: r.tasks, perMs: r.per ? durationMs(r.per) : 0, burst: r.burst, tokens: r.tokens });

export interface ScheduleInfo {
  name: string;
  cron: string;
  timeZone: string;
  type: string;
  queue: string;
  source: string;
  nextRunAt: Date;
  lastRunAt: Date | null;
  lastTaskId: string;
  lastStatus: TaskStatusName | null;
}

export function scheduleFromPb(s: Schedule): ScheduleInfo {
  return {
    name: s.name,
    cron: s.cron,
    timeZone: s.timeZone,
    type: s.type,
    queue: s.queue,
    source: s.source,
    nextRunAt: s.nextRunAt ? timestampDate(s.nextRunAt) : new Date(0),
    lastRunAt: s.lastRunAt ? timestampDate(s.lastRunAt) : null,
    lastTaskId: s.lastTaskId,
    lastStatus: s.lastStatus === TaskStatus.UNSPECIFIED ? null : statusName(s.lastStatus),
  };
}

/**
 * A connected worker session, on any replica. `credits` and `lastHeardAt` are as of its replica's last
 * heartbeat of the session; the running tasks as of the call.
 */
export interface WorkerInfo {
  sessionId: string;
  name: string;
  replicaId: string;
  taskTypes: string[];
  /** Empty: every queue. */
  queues: string[];
  /** As the worker declared it. */
  concurrency: number;
  credits: number;
  running: number;
  /** The tasks it runs, oldest lease first; at most 100. */
  runningTaskIds: string[];
  connectedAt: Date;
  /** When the worker last sent anything; null before its replica first recorded it. */
  lastHeardAt: Date | null;
  /** When its replica last confirmed the session. */
  heartbeatAt: Date;
}

export function workerFromPb(w: ConnectedWorker): WorkerInfo {
  return {
    sessionId: w.sessionId,
    name: w.name,
    replicaId: w.replicaId,
    taskTypes: w.taskTypes,
    queues: w.queues,
    concurrency: w.concurrency,
    credits: w.credits,
    running: w.running,
    runningTaskIds: w.runningTaskIds,
    connectedAt: w.connectedAt ? timestampDate(w.connectedAt) : new Date(0),
    lastHeardAt: w.lastHeardAt ? timestampDate(w.lastHeardAt) : null,
    heartbeatAt: w.heartbeatAt ? timestampDate(w.heartbeatAt) : new Date(0),
  };
}

export type WatchEvent =
  | { type: "snapshot"; task: TaskInfo }
  | { type: "log"; step: LogStep }
  | { type: "status_value"; key: string; value: JsonValue }
  | {
      type: "status";
      status: TaskStatusName;
      attempts: number;
      worker: string;
      result: JsonValue | undefined;
      error: string;
      /** When the change happened; null when a resumed watch made it up from a snapshot and the task does not say. */
      time: Date | null;
    };

const logStepFromPb = (e: PbLogEntry): LogStep => ({
  seq: Number(e.seq),
  time: e.time ? timestampDate(e.time) : new Date(0),
  message: e.message,
  attempt: e.attempt,
});

export function taskFromPb(t: Task): TaskInfo {
  const date = (ts: Task["createdAt"]) => (ts ? timestampDate(ts) : null);
  return {
    id: t.id,
    type: t.type,
    queue: t.queue,
    status: statusName(t.status),
    title: t.title,
    displayTitle: t.displayTitle,
    priority: t.priority,
    priorityBand: t.priorityBand === PriorityBand.HIGH ? "high" : t.priorityBand === PriorityBand.MEDIUM ? "medium" : "low",
    origin: t.origin === Origin.SYSTEM ? "system" : "user",
    initiator: t.initiator,
    displayInitiator: t.displayInitiator,
    nodeId: t.nodeId,
    params: t.params ?? {},
    attempts: t.attempts,
    maxAttempts: t.maxAttempts,
    createdAt: date(t.createdAt) ?? new Date(0),
    startedAt: date(t.startedAt),
    finishedAt: date(t.finishedAt),
    nextTryAt: date(t.nextTryAt),
    deadline: date(t.deadline),
    worker: t.worker,
    statusValues: t.statusValues ?? {},
    log: t.log.map(logStepFromPb),
    result: t.result ? (toJson(ValueSchema, t.result) as JsonValue) : undefined,
    error: t.error,
    timeoutMs: t.timeout ? durationMs(t.timeout) : null,
    retryDelayMs: t.retryDelay ? durationMs(t.retryDelay) : 0,
    idempotencyKey: t.idempotencyKey,
    concurrencyKey: t.concurrencyKey,
    attemptHistory: t.attemptHistory.map(attemptFromPb),
    waiting: WAIT_REASON_NAME[t.waitReason] ? { reason: WAIT_REASON_NAME[t.waitReason]!, detail: t.waitDetail } : null,
    retryOf: t.retryOf,
    retriedAs: t.retriedAs,
  };
}

export function watchEventFromPb(r: WatchTaskResponse): WatchEvent | null {
  const e = r.event;
  switch (e.case) {
    case "snapshot":
      return { type: "snapshot", task: taskFromPb(e.value) };
    case "logEntry":
      return { type: "log", step: logStepFromPb(e.value) };
    case "statusValue":
      return { type: "status_value", key: e.value.key, value: e.value.value ? (toJson(ValueSchema, e.value.value) as JsonValue) : null };
    case "statusChange":
      return {
        type: "status",
        status: statusName(e.value.status),
        attempts: e.value.attempts,
        worker: e.value.worker,
        result: e.value.result ? (toJson(ValueSchema, e.value.result) as JsonValue) : undefined,
        error: e.value.error,
        time: e.value.time ? timestampDate(e.value.time) : null,
      };
    default:
      return null;
  }
}
