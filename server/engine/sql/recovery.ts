/**
 * Statements of the reaper: ending leases that cannot end by themselves.
 *
 * Both take their rows with `for update skip locked` and re-check state under the lock, so replicas
 * sweeping together split the work, and a task that a finish (or another sweep) ended or re-leased
 * meanwhile is left alone: every change is guarded by the task's state, and recovery only ever acts on
 * the lease that was current when the row was locked.
 */
import type { FinalStatus } from "../types.js";
import { archiveCtes } from "./archive.js";
import { CHANNEL_CANCEL, CHANNEL_DISPATCH, CHANNEL_TASK, type Db } from "./db.js";
import { retryDelayMsSql } from "./retry.js";

/** The most tasks one statement ends; the reaper repeats while a statement comes back full. */
export const RECOVERY_BATCH = 250;

export interface RecoveredTask {
  id: string;
  /** Where the task went: back to the queue, or a final status. */
  status: "pending" | FinalStatus;
}

/**
 * Ends attempts whose deadline has passed. A running task timed out: the attempt counts as failed and
 * the retry rule applies (pending after the retry delay while attempts remain, else STUCK), and the
 * replica holding its session is told over NOTIFY to send the worker cancel(timed_out). A cancelling
 * task whose worker did not stop within the grace period ends CANCELED.
 */
export async function taskDeadlineExpire(db: Db, now: Date): Promise<RecoveredTask[]> {
  const { rows } = await db.query<{ id: string; final_status: RecoveredTask["status"] }>({
    name: "taskDeadlineExpire",
    text: `
      with source as (
        select t.id, t.status as was, t.session_id, t.lease_token, null::jsonb as result,
          case when t.status = 'cancelling' then t.error
               else format('attempt %s timed out after %ss', t.attempts,
                           trim_scale(round(extract(epoch from t.deadline_at - t.started_at)::numeric, 3)))
               end as final_error,
          case when t.status = 'cancelling' then 'canceled'
               when t.attempts >= t.max_attempts then 'stuck'
               else 'pending' end as final_status,
          ${retryDelayMsSql("t")} as delay_ms
        from taskq.tasks t
        where t.status in ('running', 'cancelling') and t.deadline_at <= $1
        order by t.deadline_at
        limit ${RECOVERY_BATCH}
        for update skip locked
      ),
      retried as (
        update taskq.tasks t
        set status = 'pending', next_try_at = $1::timestamptz + make_interval(secs => s.delay_ms / 1000.0),
            lease_token = null, session_id = null, deadline_at = null, error = s.final_error
        from source s where t.id = s.id and s.final_status = 'pending'
        returning t.id
      ),
      ${archiveCtes("source", "$1")}
      select s.id::text, s.final_status,
             (select pg_notify('${CHANNEL_TASK}', string_agg(id::text, ',')) from source) as notified,
             (select pg_notify('${CHANNEL_DISPATCH}', '') from retried limit 1) as woke,
             case when s.was = 'running'
                  then pg_notify('${CHANNEL_CANCEL}', concat_ws(':', s.session_id, s.id, s.lease_token, 'timed_out'))
                  end as told
      from source s`,
    values: [now],
  });
  return rows.map((r) => ({ id: r.id, status: r.final_status }));
}

/**
 * Recovers the leases of sessions that are gone: the session row is missing, or its replica has not
 * heartbeated it for `staleAfterMs` by the database's clock (so replicas with skewed clocks agree).
 * A running task returns to the queue at once while attempts remain, else ends STUCK; a cancelling
 * task ends CANCELED.
 */
export async function taskLeaseRecoverOrphaned(db: Db, staleAfterMs: number, now: Date): Promise<RecoveredTask[]> {
  const { rows } = await db.query<{ id: string; final_status: RecoveredTask["status"] }>({
    name: "taskLeaseRecoverOrphaned",
    text: `
      with orphaned as (
        select t.id, t.lease_token
        from taskq.tasks t
        where t.status in ('running', 'cancelling')
          and not exists (
            select 1 from taskq.worker_sessions ws
            where ws.id = t.session_id and ws.heartbeat_at > now() - make_interval(secs => $1 / 1000.0))
        limit ${RECOVERY_BATCH}
      ),
      source as (
        -- Locked and re-checked by lease token: a task re-leased to a live session since the scan is not touched.
        select t.id, null::jsonb as result,
          case when t.status = 'cancelling' then t.error
               else 'worker lost: its session stopped heartbeating' end as final_error,
          case when t.status = 'cancelling' then 'canceled'
               when t.attempts >= t.max_attempts then 'stuck'
               else 'pending' end as final_status
        from orphaned o join taskq.tasks t on t.id = o.id and t.lease_token = o.lease_token
        where t.status in ('running', 'cancelling')
        for update of t skip locked
      ),
      returned as (
        update taskq.tasks t
        set status = 'pending', next_try_at = $2, lease_token = null, session_id = null, deadline_at = null,
            error = s.final_error
        from source s where t.id = s.id and s.final_status = 'pending'
        returning t.id
      ),
      ${archiveCtes("source", "$2")}
      select s.id::text, s.final_status,
             (select pg_notify('${CHANNEL_TASK}', string_agg(id::text, ',')) from source) as notified,
             (select pg_notify('${CHANNEL_DISPATCH}', '') from returned limit 1) as woke
      from source s`,
    values: [staleAfterMs, now],
  });
  return rows.map((r) => ({ id: r.id, status: r.final_status }));
}

/** When the earliest deadline of a running or cancelling task falls, if any task has one. */
export async function taskNextDeadline(db: Db): Promise<Date | null> {
  const { rows } = await db.query<{ at: Date | null }>({
    name: "taskNextDeadline",
    text: "select min(deadline_at) as at from taskq.tasks where status <> 'pending'",
  });
  return rows[0]?.at ?? null;
}
