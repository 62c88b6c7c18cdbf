/** The statement that interrupts a task. */
import type { TaskStatus } from "../types.js";
import { archiveCtes } from "./archive.js";
import { CHANNEL_CANCEL, CHANNEL_TASK, type Db } from "./db.js";

/**
 * Interrupts one task in one statement: pending → canceled (archived at once); running → cancelling,
 * and the replica holding the lease's session is told over NOTIFY to send the worker a cancel.
 * Returns the status the task had before, or null when it is not in the queue (finished or unknown).
 */
export async function taskInterrupt(db: Db, id: string, reason: string, now: Date): Promise<TaskStatus | null> {
  const { rows } = await db.query<{ was: TaskStatus }>({
    name: "taskInterrupt",
    text: `
      with source as (
        select t.id, t.status as was, t.session_id, t.lease_token, null::jsonb as result, $2::text as final_error,
               case when t.status = 'pending' then 'canceled' else 'cancelling' end as final_status
        from taskq.tasks t where t.id = $1
        for update
      ),
      flagged as (
        update taskq.tasks t set status = 'cancelling'
        from source s where t.id = s.id and s.was = 'running'
        returning t.id, t.session_id, t.lease_token
      ),
      ${archiveCtes("source", "$3")}
      select s.was,
             pg_notify('${CHANNEL_TASK}', s.id::text),
             (select pg_notify('${CHANNEL_CANCEL}', concat_ws(':', f.session_id, f.id, f.lease_token, 'interrupted'))
              from flagged f) as told
      from source s`,
    values: [id, reason, now],
  });
  return rows[0]?.was ?? null;
}
