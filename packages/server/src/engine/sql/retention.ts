/** The statements of the history retention cleanup. */
import type { Db } from "./db.js";

/**
 * Deletes up to `limit` of the oldest finished tasks that finished before `before`, with their log
 * steps, idempotency keys and schedule runs. Returns how many tasks and log steps went.
 */
export async function historyDeleteFinishedBefore(db: Db, before: Date, limit: number): Promise<{ tasks: number; logSteps: number }> {
  const { rows } = await db.query<{ tasks: number; log_steps: number }>({
    name: "historyDeleteFinishedBefore",
    text: `
      with doomed as (
        select id from taskq.history where finished_at < $1 order by finished_at limit $2
      ),
      logs as (delete from taskq.task_log l using doomed d where l.task_id = d.id returning 1),
      keys as (delete from taskq.idempotency_keys k using doomed d where k.task_id = d.id returning 1),
      runs as (delete from taskq.schedule_runs r using doomed d where r.task_id = d.id returning 1),
      gone as (delete from taskq.history h using doomed d where h.id = d.id returning 1)
      -- Every data-modifying CTE runs to completion whether or not the query reads it.
      select (select count(*) from gone)::int4 as tasks, (select count(*) from logs)::int4 as log_steps`,
    values: [before, limit],
  });
  return { tasks: rows[0].tasks, logSteps: rows[0].log_steps };
}

/** Deletes up to `limit` of the oldest audit log entries made before `before`; returns how many went. */
export async function auditDeleteBefore(db: Db, before: Date, limit: number): Promise<number> {
  const { rowCount } = await db.query({
    name: "auditDeleteBefore",
    text: "delete from taskq.audit_log where id in (select id from taskq.audit_log where at < $1 order by id limit $2)",
    values: [before, limit],
  });
  return rowCount ?? 0;
}
