/**
 * Plain TypeScript shapes of tasks, queues, schedules and watch events, converted from the wire types:
 * statuses and origins as names, times as Dates, durations in ms, JSON as JSON. Nothing a caller
 * handles needs @taskq/protocol.
 */
import { toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema, timestampDate, durationMs } from "@bufbuild/protobuf/wkt";
import { Origin, PriorityBand, RejectReason, TaskStatus, type LogEntry as PbLogEntry, type Task } from "@taskq/protocol";
import type { Queue, Schedule, WatchTaskResponse } from "@taskq/protocol";

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
}

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
  };
}

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
