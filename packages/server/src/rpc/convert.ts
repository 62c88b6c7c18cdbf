/** Engine ⇄ protobuf conversion for the RPC layer. */
import { create, fromJson, toJson, type JsonValue as PbJsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { attemptsOf } from "../engine/index.js";
import type {
  Attempt,
  AttemptOutcome as AttemptOutcomeName,
  AuditEntry,
  JsonValue,
  LogEntry,
  QueueInfo,
  RateLimit,
  ScheduleRow,
  StatsSample,
  TaskRecord,
  TaskStatus as EngineStatus,
  WaitReason as WaitReasonName,
  WorkerInfo,
} from "../engine/index.js";
import { QueueSchema, ScheduleSchema, type Queue, type Schedule } from "@taskq/protocol";
import {
  AttemptOutcome,
  type AttemptSchema,
  type AuditEntrySchema,
  type ConnectedWorkerSchema,
  type StatsSampleSchema,
  LogEntrySchema,
  Origin,
  PriorityBand,
  RetryBackoff,
  TaskSchema,
  TaskStatus,
  WaitReason,
  type LogEntry as PbLogEntry,
  type Task,
} from "@taskq/protocol";

export const STATUS_TO_PB: Record<EngineStatus, TaskStatus> = {
  pending: TaskStatus.PENDING,
  running: TaskStatus.RUNNING,
  cancelling: TaskStatus.CANCELLING,
  completed: TaskStatus.COMPLETED,
  failed: TaskStatus.FAILED,
  canceled: TaskStatus.CANCELED,
  stuck: TaskStatus.STUCK,
};

export const STATUS_FROM_PB = new Map<TaskStatus, EngineStatus>(
  Object.entries(STATUS_TO_PB).map(([k, v]) => [v, k as EngineStatus]),
);

function priorityBand(priority: number): PriorityBand {
  if (priority >= 10) return PriorityBand.HIGH;
  if (priority >= 5) return PriorityBand.MEDIUM;
  return PriorityBand.LOW;
}

export function queueToPb(q: QueueInfo): Queue {
  return create(QueueSchema, {
    name: q.name,
    maxWorkers: q.maxWorkers,
    pending: q.pending,
    running: q.running,
    paused: q.paused,
    timeout: q.timeoutMs === undefined ? undefined : durationFromMs(q.timeoutMs),
    retryDelay: q.retryDelayMs === undefined ? undefined : durationFromMs(q.retryDelayMs),
    maxAttempts: q.maxAttempts,
    oldestDueAge: durationFromMs(q.oldestDueMs),
    maxRunningPerKey: q.maxRunningPerKey,
    keyWeights: q.keyWeights ?? {},
    urgentPriority: q.urgentPriority,
    rateLimit: q.rateLimit && rateLimitToPb(q.rateLimit, q.rateTokens ?? q.rateLimit.burst),
    rateLimitPerKey: q.rateLimitPerKey && rateLimitToPb(q.rateLimitPerKey, 0),
    keys: q.keys.map((k) => ({ key: k.key, running: k.running, pending: k.pending, tokens: k.tokens ?? undefined })),
    keyCount: q.keyCount,
    heldByKeyLimit: q.heldByKeyLimit,
    heldByRateLimit: q.heldByRateLimit,
  });
}

const rateLimitToPb = (r: RateLimit, tokens: number) => ({ tasks: r.tasks, per: durationFromMs(r.perMs), burst: r.burst, tokens });

export function scheduleToPb(s: ScheduleRow): Schedule {
  return create(ScheduleSchema, {
    name: s.name,
    cron: s.cron,
    timeZone: s.timeZone,
    type: s.type,
    queue: s.queue,
    source: s.source,
    nextRunAt: timestampFromDate(s.nextRunAt),
    lastRunAt: s.lastRunAt ? timestampFromDate(s.lastRunAt) : undefined,
    lastTaskId: s.lastTaskId ?? "",
    lastStatus: s.lastStatus ? STATUS_TO_PB[s.lastStatus] : TaskStatus.UNSPECIFIED,
  });
}

export const valueToPb = (v: JsonValue): Value => fromJson(ValueSchema, v as PbJsonValue);
export const valueFromPb = (v: Value | undefined): JsonValue => (v ? (toJson(ValueSchema, v) as JsonValue) : null);

export function logEntryToPb(e: LogEntry): PbLogEntry {
  return create(LogEntrySchema, { seq: BigInt(e.seq), time: timestampFromDate(e.at), message: e.message, attempt: e.attempt });
}

/** What a task without a title shows: "Untitled" in the Active list, a title made from its type elsewhere. */
type UntitledAs = "untitled" | "from_type";

const UNTITLED = "Untitled";
/** What a task dispatched without an initiator shows: "Scheduler" for SYSTEM tasks, "API" for USER ones. */
const SCHEDULER_INITIATOR = "Scheduler";
const API_INITIATOR = "API";

/** A readable title from a task type: "ExecuteScript" → "Execute script", "send_email" → "Send email". */
function titleFromType(type: string): string {
  const words = type
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .split(/[\s_\-.:/]+/)
    .filter(Boolean)
    .map((w) => (w.length > 1 && w === w.toUpperCase() ? w : w.toLowerCase()));
  const text = words.join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export interface TaskToPbOptions {
  /** Adds params, status values and the log (lists leave them out). */
  log?: LogEntry[];
  untitled: UntitledAs;
}

/** A task for the wire. */
export function taskToPb(t: TaskRecord, opts: TaskToPbOptions): Task {
  const detail = opts.log ? { log: opts.log } : null;
  return create(TaskSchema, {
    id: t.id,
    type: t.type,
    queue: t.queue,
    status: STATUS_TO_PB[t.status],
    title: t.title,
    displayTitle: t.title || (opts.untitled === "untitled" ? UNTITLED : titleFromType(t.type)),
    displayInitiator: t.initiator || (t.origin === "system" ? SCHEDULER_INITIATOR : API_INITIATOR),
    deadline: t.deadlineAt ? timestampFromDate(t.deadlineAt) : undefined,
    priority: t.priority,
    priorityBand: priorityBand(t.priority),
    origin: t.origin === "system" ? Origin.SYSTEM : Origin.USER,
    initiator: t.initiator,
    nodeId: t.nodeId,
    params: detail ? t.params : undefined,
    attempts: t.attempts,
    maxAttempts: t.maxAttempts,
    createdAt: timestampFromDate(t.createdAt),
    startedAt: t.startedAt ? timestampFromDate(t.startedAt) : undefined,
    finishedAt: t.finishedAt ? timestampFromDate(t.finishedAt) : undefined,
    nextTryAt: t.nextTryAt ? timestampFromDate(t.nextTryAt) : undefined,
    worker: t.worker,
    statusValues: detail ? t.statusValues : undefined,
    log: detail ? detail.log.map(logEntryToPb) : [],
    result: t.result === undefined ? undefined : valueToPb(t.result),
    error: t.error,
    timeout: t.timeoutMs === null ? undefined : durationFromMs(t.timeoutMs),
    retryDelay: durationFromMs(t.retryDelayMs),
    retryBackoff: t.retryBackoff === "exponential" ? RetryBackoff.EXPONENTIAL : RetryBackoff.FIXED,
    idempotencyKey: t.idempotencyKey ?? "",
    attemptHistory: detail ? attemptsOf(t.statusChanges).map(attemptToPb) : [],
    waitReason: t.waiting ? WAIT_REASON_TO_PB[t.waiting.reason] : WaitReason.UNSPECIFIED,
    waitDetail: t.waiting?.detail ?? "",
    retryOf: t.retryOf ?? "",
    retriedAs: t.retriedAs ?? "",
    concurrencyKey: t.concurrencyKey ?? "",
  });
}

const WAIT_REASON_TO_PB: Record<WaitReasonName, WaitReason> = {
  not_due: WaitReason.NOT_DUE,
  queue_paused: WaitReason.QUEUE_PAUSED,
  no_worker: WaitReason.NO_WORKER,
  queue_limit: WaitReason.QUEUE_LIMIT,
  key_limit: WaitReason.KEY_LIMIT,
  global_limit: WaitReason.GLOBAL_LIMIT,
  rate_limit: WaitReason.RATE_LIMIT,
  workers_busy: WaitReason.WORKERS_BUSY,
};

const OUTCOME_TO_PB: Record<AttemptOutcomeName, AttemptOutcome> = {
  running: AttemptOutcome.RUNNING,
  succeeded: AttemptOutcome.SUCCEEDED,
  failed: AttemptOutcome.FAILED,
  timed_out: AttemptOutcome.TIMED_OUT,
  lost: AttemptOutcome.LOST,
  canceled: AttemptOutcome.CANCELED,
  given_back: AttemptOutcome.GIVEN_BACK,
  snoozed: AttemptOutcome.SNOOZED,
};

export const workerToPb = (w: WorkerInfo): MessageInitShape<typeof ConnectedWorkerSchema> => ({
  sessionId: w.sessionId,
  name: w.name,
  replicaId: w.replicaId,
  taskTypes: w.taskTypes,
  queues: w.queues,
  concurrency: w.concurrency,
  credits: w.credits,
  running: w.running,
  runningTaskIds: w.runningTaskIds,
  connectedAt: timestampFromDate(w.connectedAt),
  lastHeardAt: w.heardAt ? timestampFromDate(w.heardAt) : undefined,
  heartbeatAt: timestampFromDate(w.heartbeatAt),
});

const attemptToPb = (a: Attempt): MessageInitShape<typeof AttemptSchema> => ({
  number: a.number,
  worker: a.worker,
  replica: a.replica,
  startedAt: timestampFromDate(a.startedAt),
  endedAt: a.endedAt ? timestampFromDate(a.endedAt) : undefined,
  outcome: OUTCOME_TO_PB[a.outcome],
  error: a.error,
});

export const auditEntryToPb = (e: AuditEntry): MessageInitShape<typeof AuditEntrySchema> => ({
  id: e.id,
  time: timestampFromDate(e.at),
  actor: e.actor,
  action: e.action,
  params: e.params,
  affected: e.affected,
});

export const statsSampleToPb = (s: StatsSample): MessageInitShape<typeof StatsSampleSchema> => ({
  time: timestampFromDate(s.at),
  queue: s.queue,
  pending: s.pending,
  running: s.running,
  completed: s.completed,
  failed: s.failed,
  canceled: s.canceled,
  stuck: s.stuck,
});
