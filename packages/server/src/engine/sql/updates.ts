/** Statements a running task's worker makes: log steps and status values. Each is fenced by the lease token. */
import type { JsonValue } from "../types.js";
import { CHANNEL_TASK, type Db } from "./db.js";

/** Appends a log step; returns its sequence number, or null when the token no longer holds the lease. */
export async function taskLogAppend(
  db: Db,
  p: { id: string; leaseToken: string; message: string },
  now: Date,
): Promise<number | null> {
  const { rows } = await db.query<{ seq: number }>({
    name: "taskLogAppend",
    text: `
      with t as (
        update taskq.tasks set log_seq = log_seq + 1
        where id = $1 and lease_token = $2 and status in ('running', 'cancelling')
        returning id, log_seq, attempts
      ),
      ins as (
        insert into taskq.task_log (task_id, seq, attempt, at, message)
        select id, log_seq, attempts, $3, $4 from t
        returning task_id, seq
      )
      select seq::float8 as seq, pg_notify('${CHANNEL_TASK}', task_id::text) from ins`,
    values: [p.id, p.leaseToken, now, p.message],
  });
  return rows[0]?.seq ?? null;
}

/**
 * Gives a running attempt at least `ms` more from `now`: its deadline becomes the later of the two. The
 * new deadline, or null when the token no longer holds the lease or the task is being interrupted (a
 * grace period is not extended).
 */
export async function taskDeadlineExtend(db: Db, p: { id: string; leaseToken: string; ms: number }, now: Date): Promise<Date | null> {
  const { rows } = await db.query<{ deadline_at: Date }>({
    name: "taskDeadlineExtend",
    text: `
      update taskq.tasks
      set deadline_at = greatest(deadline_at, $3::timestamptz + make_interval(secs => $4 / 1000.0))
      where id = $1 and lease_token = $2 and status = 'running'
      returning deadline_at`,
    values: [p.id, p.leaseToken, now, p.ms],
  });
  return rows[0]?.deadline_at ?? null;
}

/**
 * Sets one status value: "set", "not_held" when the token no longer holds the lease, or "full" when the
 * task already has `maxKeys` other keys (an existing key may always be set again).
 */
export async function taskStatusValueSet(
  db: Db,
  p: { id: string; leaseToken: string; key: string; value: JsonValue; maxKeys: number },
): Promise<"set" | "not_held" | "full"> {
  const { rows } = await db.query<{ held: boolean; set: boolean }>({
    name: "taskStatusValueSet",
    text: `
      with held as (
        select id, status_values from taskq.tasks
        where id = $1 and lease_token = $2 and status in ('running', 'cancelling')
        for update
      ),
      t as (
        update taskq.tasks t set status_values = t.status_values || jsonb_build_object($3::text, $4::jsonb)
        from held h
        where t.id = h.id and (h.status_values ? $3 or (select count(*) from jsonb_object_keys(h.status_values)) < $5)
        returning t.id
      )
      select exists (select 1 from held) as held, exists (select 1 from t) as set,
             (select pg_notify('${CHANNEL_TASK}', id::text) from t) as notified`,
    values: [p.id, p.leaseToken, p.key, JSON.stringify(p.value), p.maxKeys],
  });
  return rows[0].set ? "set" : rows[0].held ? "full" : "not_held";
}
