/** Row ⇄ engine type conversion shared by the SQL modules. */
import type { EndedBy, JsonObject, JsonValue, LogEntry, StatusChange, TaskRecord, TaskStatus } from "../types.js";

/** The columns of tasks and history that a TaskRecord needs, in a form both tables can produce. */
const TASK_COLUMNS = `id::text, type, queue, status, priority, params, title, origin, initiator, node_id,
  idempotency_key, attempts, max_attempts, retry_delay_ms::float8 as retry_delay_ms, retry_backoff,
  timeout_ms::float8 as timeout_ms, created_at, started_at, worker, status_values, log_seq::float8 as log_seq, error,
  status_changes, retry_of::text, concurrency_key`;

/** A TaskRow from taskq.tasks. */
export const ACTIVE_COLUMNS = `${TASK_COLUMNS}, next_try_at, deadline_at, null::timestamptz as finished_at, null::jsonb as result, '' as ended_by,
  null::text as retried_as`;

/** A TaskRow from taskq.history. */
export const HISTORY_COLUMNS = `${TASK_COLUMNS}, null::timestamptz as next_try_at, null::timestamptz as deadline_at, finished_at, result, ended_by,
  retried_as::text`;

export interface TaskRow {
  id: string;
  type: string;
  queue: string;
  status: TaskStatus;
  priority: number;
  params: JsonObject;
  title: string;
  origin: "user" | "system";
  initiator: string;
  node_id: string;
  idempotency_key: string | null;
  concurrency_key: string | null;
  attempts: number;
  max_attempts: number;
  retry_delay_ms: number;
  retry_backoff: "fixed" | "exponential";
  timeout_ms: number | null;
  created_at: Date;
  next_try_at: Date | null;
  deadline_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  worker: string;
  status_values: JsonObject;
  log_seq: number;
  result: JsonValue | null;
  error: string;
  /** "at" is in epoch ms; "r" and "o" only where migration 009 says. */
  status_changes: { s: TaskStatus; a: number; w: string; e: string; at: number; q: number; r?: string; o?: EndedBy }[];
  /** How the final change came about; "" while active and for rows archived before migration 009. */
  ended_by: EndedBy | "";
  retry_of: string | null;
  /** Always null for an active task: only a finished one can have been retried. */
  retried_as: string | null;
}

export function taskFromRow(r: TaskRow): TaskRecord {
  return {
    id: r.id,
    type: r.type,
    queue: r.queue,
    status: r.status,
    priority: r.priority,
    params: r.params,
    title: r.title,
    origin: r.origin,
    initiator: r.initiator,
    nodeId: r.node_id,
    idempotencyKey: r.idempotency_key,
    concurrencyKey: r.concurrency_key,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    retryDelayMs: r.retry_delay_ms,
    retryBackoff: r.retry_backoff,
    timeoutMs: r.timeout_ms,
    createdAt: r.created_at,
    nextTryAt: r.next_try_at,
    deadlineAt: r.status === "pending" ? null : r.deadline_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    worker: r.worker,
    statusValues: r.status_values,
    logSeq: r.log_seq,
    result: r.status === "completed" ? r.result : undefined,
    error: r.error,
    statusChanges: statusChangesOf(r),
    retryOf: r.retry_of,
    retriedAs: r.retried_as,
  };
}

/**
 * A task's status changes: those its row recorded, then, for a finished task, the final one, which the
 * history row holds in its own columns (so archiving a task writes no change of its own).
 */
function statusChangesOf(r: TaskRow): StatusChange[] {
  const changes = r.status_changes.map(changeFromJson);
  if (r.finished_at) {
    const final: StatusChange = { status: r.status, attempts: r.attempts, worker: r.worker, error: r.error, at: r.finished_at, logSeq: Number(r.log_seq) };
    if (r.ended_by) final.ended = r.ended_by;
    changes.push(final);
  }
  return changes;
}

function changeFromJson(c: TaskRow["status_changes"][number]): StatusChange {
  const change: StatusChange = { status: c.s, attempts: c.a, worker: c.w, error: c.e, at: new Date(c.at), logSeq: Number(c.q) };
  if (c.r !== undefined) change.replica = c.r;
  if (c.o !== undefined) change.ended = c.o;
  return change;
}

export interface LogRow {
  seq: number;
  at: Date;
  message: string;
  attempt: number;
}

export const logFromRow = (r: LogRow): LogEntry => ({ seq: r.seq, at: r.at, message: r.message, attempt: r.attempt });
