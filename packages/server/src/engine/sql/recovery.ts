/**
 * Statements of the reaper: finding and ending leases that cannot end by themselves. Every change is
 * made under the row lock and re-checks state (and, for lost sessions, the lease token), so a task
 * that a finish or another replica's sweep ended or re-leased meanwhile is left alone.
 */
import type { RecoveredTask, WakeOnFree } from "../types.js";
import { archiveCtes } from "./archive.js";
import { changeAppendSql } from "./changes.js";
import { CHANNEL_CANCEL, CHANNEL_TASK, dueNotifySql, type Db } from "./db.js";
import { wakeOnFreeSql } from "./lease.js";
import { retryDelayMsSql } from "./retry.js";

/** The most tasks one statement ends; the reaper repeats while a statement comes back full. */
export const RECOVERY_BATCH = 250;

/**
 * Ends attempts whose deadline has passed. A running task timed out: the attempt counts as failed and
 * the retry rule applies (pending after the retry delay while attempts remain, else STUCK), and the
 * replica holding its session is told over NOTIFY to send the worker cancel(timed_out). A cancelling
 * task whose worker did not stop within the grace period ends CANCELED.
 */
export async function taskDeadlineExpire(db: Db, now: Date, wakeOnFree: WakeOnFree = []): Promise<RecoveredTask[]> {
  const { rows } = await db.query<{ id: string; final_status: RecoveredTask["status"] }>({
    name: "taskDeadlineExpire",
    text: `
      with source as (
        select t.id, t.queue, t.status as was, t.session_id, t.lease_token, null::jsonb as result,
          case when t.status = 'cancelling' then t.error
               else format('attempt %s timed out after %ss', t.attempts,
                           trim_scale(round(extract(epoch from t.deadline_at - t.started_at)::numeric, 3)))
               end as final_error,
          case when t.status = 'cancelling' then 'canceled'
               when t.attempts >= t.max_attempts then 'stuck'
               else 'pending' end as final_status,
          ${retryDelayMsSql("t")} as delay_ms, 'timeout'::text as ended_by
        from taskq.tasks t
        where t.status in ('running', 'cancelling') and t.deadline_at <= $1
        order by t.deadline_at
        limit ${RECOVERY_BATCH}
        for update skip locked
      ),
      retried as (
        update taskq.tasks t
        set status = 'pending', next_try_at = $1::timestamptz + make_interval(secs => s.delay_ms / 1000.0),
            lease_token = null, session_id = null, deadline_at = null, error = s.final_error,
            status_changes = ${changeAppendSql("t.status_changes", { status: "'pending'::text", attempts: "t.attempts", error: "s.final_error", at: "$1", seq: "t.log_seq", ended: "'timeout'" })}
        from source s where t.id = s.id and s.final_status = 'pending'
        returning t.id, t.next_try_at
      ),
      ${archiveCtes("source", "$1")}
      select s.id::text, s.final_status,
             (select pg_notify('${CHANNEL_TASK}', string_agg(id::text, ',')) from source) as notified,
             ${dueNotifySql("retried")} as due,
             ${wakeOnFreeSql("$2")} as woke_freed,
             case when s.was = 'running'
                  then pg_notify('${CHANNEL_CANCEL}', concat_ws(':', s.session_id, s.id, s.lease_token, 'timed_out'))
                  end as told
      from source s`,
    values: [now, wakeOnFree],
  });
  return rows.map((r) => ({ id: r.id, status: r.final_status }));
}

/**
 * The leases of sessions that are gone: the session row is missing, or its replica has not heartbeated
 * it for `staleAfterMs` by the database's clock (so replicas with skewed clocks agree). Returns each
 * task with the token of that lease; ending them is taskLeaseRelease's job, which re-checks the token
 * under the row lock, so a task finished or re-leased since this read is left alone.
 */
export async function taskLeaseFindOrphaned(db: Db, staleAfterMs: number): Promise<{ id: string; leaseToken: string }[]> {
  const { rows } = await db.query<{ id: string; lease_token: string }>({
    name: "taskLeaseFindOrphaned",
    text: `
      select t.id::text, t.lease_token::text
      from taskq.tasks t
      where t.status in ('running', 'cancelling')
        and not exists (
          select 1 from taskq.worker_sessions ws
          where ws.id = t.session_id and ws.heartbeat_at > now() - make_interval(secs => $1 / 1000.0))
      limit ${RECOVERY_BATCH}`,
    values: [staleAfterMs],
  });
  return rows.map((r) => ({ id: r.id, leaseToken: r.lease_token }));
}

/** When the earliest deadline of a running or cancelling task falls, if any task has one. */
export async function taskNextDeadline(db: Db): Promise<Date | null> {
  const { rows } = await db.query<{ at: Date | null }>({
    name: "taskNextDeadline",
    text: "select min(deadline_at) as at from taskq.tasks where status <> 'pending'",
  });
  return rows[0]?.at ?? null;
}
