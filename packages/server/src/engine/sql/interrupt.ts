/** The statement that interrupts a task. */
import type { TaskStatus } from "../types.js";
import { archiveCtes } from "./archive.js";
import { changeAppendSql } from "./changes.js";
import { CHANNEL_CANCEL, CHANNEL_TASK, type Db } from "./db.js";

/**
 * Interrupts one task in one statement: pending → canceled (archived at once); running → cancelling,
 * the replica holding the lease's session is told over NOTIFY to send the worker a cancel, and the
 * attempt's deadline moves to the end of the grace period (or stays, if sooner). The reason becomes the
 * task's error. A cancelling task is left as it is. Returns the status the task had before and its
 * deadline, or null when it is not in the queue (finished or unknown).
 */
export async function taskInterrupt(
  db: Db,
  p: { id: string; reason: string; graceMs: number },
  now: Date,
): Promise<{ was: TaskStatus; deadlineAt: Date | null } | null> {
  const { rows } = await db.query<{ was: TaskStatus; deadline_at: Date | null }>({
    name: "taskInterrupt",
    text: `
      with source as (
        select t.id, t.status as was, t.session_id, t.lease_token, null::jsonb as result, $2::text as final_error,
               'interrupt'::text as ended_by,
               case when t.status = 'pending' then 'canceled' else 'cancelling' end as final_status
        from taskq.tasks t where t.id = $1
        for update
      ),
      flagged as (
        update taskq.tasks t
        set status = 'cancelling', error = $2,
            status_changes = ${changeAppendSql("t.status_changes", { status: "'cancelling'::text", attempts: "t.attempts", worker: "t.worker", error: "$2", at: "$3", seq: "t.log_seq" })},
            deadline_at = least(t.deadline_at, $3::timestamptz + make_interval(secs => $4 / 1000.0))
        from source s where t.id = s.id and s.was = 'running'
        returning t.id, t.session_id, t.lease_token, t.deadline_at
      ),
      ${archiveCtes("source", "$3")}
      select s.was, (select deadline_at from flagged) as deadline_at,
             pg_notify('${CHANNEL_TASK}', s.id::text),
             (select pg_notify('${CHANNEL_CANCEL}', concat_ws(':', f.session_id, f.id, f.lease_token, 'interrupted'))
              from flagged f) as told
      from source s`,
    values: [p.id, p.reason, now, p.graceMs],
  });
  return rows[0] ? { was: rows[0].was, deadlineAt: rows[0].deadline_at } : null;
}
