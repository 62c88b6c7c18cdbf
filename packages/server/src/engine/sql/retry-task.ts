/**
 * The statements that retry finished tasks: one by id (Retry), or a batch a filter matches (RetryMany).
 * (Not the retry of an attempt, which sends a running task back to the queue: that rule is in retry.ts.)
 *
 * A retry is a fresh task: the original's type, queue, params, title, priority, origin, initiator, node,
 * timeout, attempt limit, retry settings and concurrency key, no idempotency key, a new id, pending and due now. The
 * statement that inserts it also sets the original's `retried_as` and `retry_of` on the retry, under a
 * lock on the original's history row, so a task is retried at most once however many ask at the same time.
 */
import type { AuditRecord, FinalStatus, TaskFilter, TaskStatus } from "../types.js";
import { auditCtes, auditIdSql, auditSql, type AuditSql } from "./audit.js";
import type { Db } from "./db.js";
import { statementValues, taskFilterSql } from "./filter.js";

/** The statuses a task may be retried from. */
export const RETRIABLE_STATUSES: readonly FinalStatus[] = ["failed", "canceled", "stuck"];

/**
 * CTEs that retry the history rows `source` picks (the picking query, locking them), those of `eligible`:
 * retriable, not retried yet, in a queue the server still defines (`queues`, a text[] placeholder).
 * `retries` holds the new tasks (id, retry_of). The insert wakes every replica's dispatcher (the
 * tasks trigger).
 */
function retryCtes(pick: string, p: { queues: string; now: string }): string {
  return `
    source as (select h.* ${pick}),
    eligible as (
      select s.* from source s
      where s.status in (${RETRIABLE_STATUSES.map((st) => `'${st}'`).join(", ")}) and s.retried_as is null
        and s.queue = any(${p.queues}::text[])
    ),
    retries as (
      insert into taskq.tasks (id, type, queue, status, params, title, priority, origin, initiator, node_id,
                               timeout_ms, max_attempts, retry_delay_ms, retry_backoff, created_at, next_try_at, retry_of,
                               concurrency_key)
      select nextval('taskq.task_id_seq'), e.type, e.queue, 'pending', e.params, e.title, e.priority, e.origin, e.initiator,
             e.node_id, e.timeout_ms, e.max_attempts, e.retry_delay_ms, e.retry_backoff, ${p.now}, ${p.now}, e.id,
             e.concurrency_key
      from eligible e order by e.id
      returning id, retry_of
    ),
    linked as (
      update taskq.history h set retried_as = r.id from retries r where h.id = r.retry_of returning h.id
    )`;
}

/** What taskRetry found: the task's status and queue, and its retry, made now or before. */
export interface RetryOutcome {
  status: TaskStatus;
  queue: string;
  /** The retry this statement made; null when it made none. */
  createdId: string | null;
  /** The retry made before; null when there was none. */
  retriedAs: string | null;
}

/**
 * Retries one finished task in one statement (see retryCtes), writing the audit row when it made a retry.
 * A task still in the queue comes back with its status and no retry; null when the task is unknown.
 */
export async function taskRetry(
  db: Db,
  p: { id: string; queues: string[]; actor: string },
  now: Date,
): Promise<RetryOutcome | null> {
  const audit: AuditSql = {
    id: "null",
    at: "$3",
    actor: "$4",
    action: "retry",
    params: "jsonb_build_object('task_id', $1::text, 'retry_id', (select id::text from retries))",
  };
  const { rows } = await db.query<{ status: TaskStatus; queue: string; created_id: string | null; retried_as: string | null }>({
    name: "taskRetry",
    text: `
      with ${retryCtes("from taskq.history h where h.id = $1 for update", { queues: "$2", now: "$3" })},
      ${auditCtes("retries", audit)}
      select s.status, s.queue, (select id::text from retries) as created_id, s.retried_as::text as retried_as,
             ${auditIdSql(audit)} as audit_id
      from source s
      union all
      select t.status, t.queue, null, null, null from taskq.tasks t where t.id = $1`,
    values: [p.id, p.queues, now, p.actor],
  });
  const r = rows[0];
  return r ? { status: r.status, queue: r.queue, createdId: r.created_id, retriedAs: r.retried_as } : null;
}

/** The conditions of a task in history that RetryMany takes: the filter's, not retried yet, its queue defined. */
function retriableSql(filter: TaskFilter, queues: string[], param: (value: unknown) => string): string {
  return `${taskFilterSql("h", filter, param)} and h.retried_as is null and h.queue = any(${param(queues)}::text[])`;
}

/**
 * Retries up to `limit` finished tasks that `filter` matches (its statuses retriable) and that were not
 * retried yet, oldest id first, in one statement, and records them in the audit log (`audit`; see
 * auditCtes). Rows another transaction holds locked (a Retry of the same task) are skipped, never waited
 * for. Returns how many it retried and the audit row's id.
 */
export async function taskRetryMatching(
  db: Db,
  p: { filter: TaskFilter; queues: string[]; limit: number; audit: AuditRecord },
  now: Date,
): Promise<{ count: number; auditId: string | null }> {
  const { values, param } = statementValues();
  const pick = `from taskq.history h where ${retriableSql(p.filter, p.queues, param)} order by h.id limit ${param(p.limit)} for update skip locked`;
  const cte = retryCtes(pick, { queues: param(p.queues), now: param(now) });
  const audit = auditSql(p.audit, now, param);
  const { rows } = await db.query<{ count: number; audit_id: string | null }>(
    `with ${cte},
     ${auditCtes("retries", audit)}
     select (select count(*) from retries)::int4 as count, ${auditIdSql(audit)} as audit_id`,
    values,
  );
  return { count: rows[0].count, auditId: rows[0].audit_id };
}

/** How many finished tasks RetryMany would take for `filter`, counting no further than `limit`. */
export async function historyCountRetriable(db: Db, filter: TaskFilter, queues: string[], limit: number): Promise<number> {
  const { values, param } = statementValues();
  const { rows } = await db.query<{ n: number }>(
    `select count(*)::int4 as n from (select 1 from taskq.history h where ${retriableSql(filter, queues, param)} limit ${param(limit)}) m`,
    values,
  );
  return rows[0].n;
}
