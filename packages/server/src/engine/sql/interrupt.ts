/** The statements that interrupt tasks: one by id (Interrupt), or a batch a filter matches (InterruptMany). */
import type { AuditRecord, TaskFilter, TaskStatus } from "../types.js";
import { archiveCtes } from "./archive.js";
import { auditCtes, auditIdSql, auditSql } from "./audit.js";
import { changeAppendSql } from "./changes.js";
import { CHANNEL_CANCEL, CHANNEL_TASK, tasksChangedNotifySql, type Db } from "./db.js";
import { statementValues, taskFilterSql } from "./filter.js";

/**
 * The CTEs that interrupt the rows `source` picks from taskq.tasks t (the picking query, locking them):
 * pending → canceled (archived at once); running → cancelling, its deadline moved to the end of the grace
 * period (or left, if sooner). `flagged` holds the running ones. The placeholders are of the reason
 * (which becomes the error), the time and the grace period in ms.
 */
function interruptCtes(pick: string, p: { reason: string; now: string; graceMs: string }): string {
  return `
    source as (
      select t.id, t.status as was, t.session_id, t.lease_token, null::jsonb as result, ${p.reason}::text as final_error,
             'interrupt'::text as ended_by,
             case when t.status = 'pending' then 'canceled' else 'cancelling' end as final_status
      ${pick}
    ),
    flagged as (
      update taskq.tasks t
      set status = 'cancelling', error = ${p.reason},
          status_changes = ${changeAppendSql("t.status_changes", { status: "'cancelling'::text", attempts: "t.attempts", worker: "t.worker", error: p.reason, at: p.now, seq: "t.log_seq" })},
          deadline_at = least(t.deadline_at, ${p.now}::timestamptz + make_interval(secs => ${p.graceMs} / 1000.0))
      from source s where t.id = s.id and s.was = 'running'
      returning t.id, t.session_id, t.lease_token, t.deadline_at
    ),
    ${archiveCtes("source", p.now)}`;
}

/** A select-list expression telling the replica holding each flagged task's session to send its worker a cancel. */
const cancelNotifySql = `(select count(pg_notify('${CHANNEL_CANCEL}', concat_ws(':', f.session_id, f.id, f.lease_token, 'interrupted')))
  from flagged f)`;

/**
 * Interrupts one task in one statement (see interruptCtes); the replica holding a running task's session
 * is told over NOTIFY to send the worker a cancel. A cancelling task is left as it is. Returns the status
 * the task had before and its deadline, or null when it is not in the queue (finished or unknown).
 */
export async function taskInterrupt(
  db: Db,
  p: { id: string; reason: string; graceMs: number },
  now: Date,
): Promise<{ was: TaskStatus; deadlineAt: Date | null } | null> {
  const { rows } = await db.query<{ was: TaskStatus; deadline_at: Date | null }>({
    name: "taskInterrupt",
    text: `
      with ${interruptCtes("from taskq.tasks t where t.id = $1 for update", { reason: "$2", now: "$3", graceMs: "$4" })}
      select s.was, (select deadline_at from flagged) as deadline_at,
             pg_notify('${CHANNEL_TASK}', s.id::text),
             ${cancelNotifySql} as told
      from source s`,
    values: [p.id, p.reason, now, p.graceMs],
  });
  return rows[0] ? { was: rows[0].was, deadlineAt: rows[0].deadline_at } : null;
}

/**
 * Interrupts up to `limit` tasks that `filter` matches (its statuses pending or running), oldest id
 * first, in one statement, as taskInterrupt does each, and records them in the audit log (`audit`; see
 * auditCtes). Rows another transaction holds locked (a lease, a finish in flight) are skipped, never
 * waited for. Returns how many it interrupted, the earliest deadline it set, and the audit row's id.
 */
export async function taskInterruptMatching(
  db: Db,
  p: { filter: TaskFilter; limit: number; reason: string; graceMs: number; audit: AuditRecord },
  now: Date,
): Promise<{ count: number; deadlineAt: Date | null; auditId: string | null }> {
  const { values, param } = statementValues();
  const cte = interruptCtes(`from taskq.tasks t where ${taskFilterSql("t", p.filter, param)} order by t.id limit ${param(p.limit)} for update skip locked`, {
    reason: param(p.reason),
    now: param(now),
    graceMs: param(p.graceMs),
  });
  const audit = auditSql(p.audit, now, param);
  const { rows } = await db.query<{ count: number; deadline_at: Date | null; audit_id: string | null }>(
    `with ${cte},
     ${auditCtes("source", audit)}
     select (select count(*) from source)::int4 as count, (select min(deadline_at) from flagged) as deadline_at,
            ${tasksChangedNotifySql("source")} as notified, ${cancelNotifySql} as told, ${auditIdSql(audit)} as audit_id`,
    values,
  );
  return { count: rows[0].count, deadlineAt: rows[0].deadline_at, auditId: rows[0].audit_id };
}

/** How many tasks `filter` matches in the queue, counting no further than `limit`. */
export async function taskCountMatching(db: Db, filter: TaskFilter, limit: number): Promise<number> {
  const { values, param } = statementValues();
  const { rows } = await db.query<{ n: number }>(
    `select count(*)::int4 as n from (select 1 from taskq.tasks t where ${taskFilterSql("t", filter, param)} limit ${param(limit)}) m`,
    values,
  );
  return rows[0].n;
}
