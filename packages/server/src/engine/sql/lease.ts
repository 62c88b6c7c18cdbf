/** Statements about leases once taken: when the next task comes due, finishing and releasing leases. (Taking them: claim.ts.) */
import type { FinishedAs, FinishInput, ReleaseInput, WakeOnFree } from "../types.js";
import { archiveCtes } from "./archive.js";
import { changeAppendSql } from "./changes.js";
import { CHANNEL_DISPATCH, CHANNEL_TASK, dueNotifySql, type Db } from "./db.js";
import { retryDelayMsSql } from "./retry.js";

/** When the earliest pending task of these types becomes due, if any is scheduled after `now`. */
export async function taskNextDueAt(db: Db, types: string[], now: Date): Promise<Date | null> {
  const { rows } = await db.query<{ at: Date | null }>({
    name: "taskNextDueAt",
    text: `select min(d.at) as at from unnest($1::text[]) as ty(type)
           cross join lateral (
             select t.next_try_at as at from taskq.tasks t
             where t.status = 'pending' and t.type = ty.type and t.next_try_at > $2
             order by t.next_try_at limit 1
           ) d`,
    values: [types, now],
  });
  return rows[0]?.at ?? null;
}

/**
 * The FROM clause that finds, locked, the live leases that the rows of an `input` CTE (id, token)
 * name. Each is looked up by primary key whatever stale statistics say about how many tasks run
 * (believing "none", the planner would rather walk every running task once per input row): the
 * lateral subquery is a nested loop, and "offset 0" keeps the status test out of it, so the partial
 * index of running tasks cannot be chosen instead. A matching token alone means the lease is live.
 */
const HELD_TASKS = `from input i
        cross join lateral (select * from taskq.tasks t where t.id = i.id and t.lease_token = i.token offset 0 for update) t
        where t.status in ('running', 'cancelling')`;

/**
 * Records many finishes in one statement. A finish counts only if its token still holds the lease of a
 * running or cancelling task; any other finish changes nothing and is absent from the result. The row
 * lock plus the token check make a second finish of the same lease (a duplicate, or one racing lease
 * recovery) a no-op, so every outcome is recorded once.
 *
 * Where the task goes: cancelling → canceled whatever the outcome; success → completed; failure →
 * failed; retry → pending after the delay while attempts remain, else failed.
 */
export async function taskFinishMany(
  db: Db,
  finishes: FinishInput[],
  now: Date,
  wakeOnFree: WakeOnFree = [],
): Promise<Map<string, FinishedAs>> {
  const { rows } = await db.query<{ id: string; final_status: FinishedAs }>({
    name: "taskFinishMany",
    text: `
      with input as (
        select * from unnest($1::int8[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::int8[])
          as i(id, token, kind, result, error, delay_ms)
      ),
      source as (
        select t.id, t.queue, i.result,
          -- A cancelling task keeps the interrupt's reason as its error.
          case when t.status = 'cancelling' then t.error else nullif(i.error, '') end as final_error,
          case when t.status = 'cancelling' then 'canceled'
               when i.kind = 'success' then 'completed'
               when i.kind = 'failure' then 'failed'
               when t.attempts >= t.max_attempts then 'failed'
               else 'pending' end as final_status,
          coalesce(i.delay_ms, ${retryDelayMsSql("t")}) as delay_ms, 'finish'::text as ended_by
        ${HELD_TASKS}
      ),
      retried as (
        update taskq.tasks t
        set status = 'pending', next_try_at = $7::timestamptz + make_interval(secs => s.delay_ms / 1000.0),
            lease_token = null, session_id = null, deadline_at = null, error = coalesce(s.final_error, ''),
            status_changes = ${changeAppendSql("t.status_changes", { status: "'pending'::text", attempts: "t.attempts", error: "coalesce(s.final_error, '')", at: "$7", seq: "t.log_seq", ended: "'finish'" })}
        from source s where t.id = s.id and s.final_status = 'pending'
        returning t.id, t.next_try_at
      ),
      ${archiveCtes("source", "$7")}
      select s.id::text, s.final_status,
             (select pg_notify('${CHANNEL_TASK}', string_agg(id::text, ',')) from source) as notified,
             ${dueNotifySql("retried")} as due,
             ${wakeOnFreeSql("$8")} as woke
      from source s`,
    values: [
      finishes.map((f) => f.id),
      finishes.map((f) => f.leaseToken),
      finishes.map((f) => f.outcome.kind),
      finishes.map((f) => (f.outcome.kind === "success" ? JSON.stringify(f.outcome.result) : null)),
      finishes.map((f) => (f.outcome.kind === "success" ? null : f.outcome.error)),
      finishes.map((f) => (f.outcome.kind === "retry" ? f.outcome.delayMs : null)),
      now,
      wakeOnFree,
    ],
  });
  return new Map(rows.map((r) => [r.id, r.final_status]));
}

/** A select-list expression that notifies the dispatchers when `source` freed a slot in `param`'s queues. */
export const wakeOnFreeSql = (param: string) =>
  `(select pg_notify('${CHANNEL_DISPATCH}', '') from source s where ${param}::text[] is null or s.queue = any(${param}::text[]) limit 1)`;

/**
 * How leases came to be released: their worker or session was "lost" (the attempt counts); or, giving
 * the attempt back, the server shut down, the worker "declined" them unrun or its handler "snoozed"
 * them, or they were "undelivered" (claimed for a session that closed before they reached its worker).
 */
export type ReleaseHow = "lost" | "shutdown" | "declined" | "snoozed" | "undelivered";

/**
 * Ends leases whose worker is gone or gave them back. An attempt lost with its worker stands: the task
 * returns to pending at once while attempts remain, else ends STUCK. Any other release gives the attempt
 * back. A cancelling task ends CANCELED. Guarded by token like a finish, so a task that finished
 * meanwhile is untouched. Wakes the dispatchers when anything went back to pending.
 */
export async function taskLeaseRelease(
  db: Db,
  leases: ReleaseInput[],
  opts: { how: ReleaseHow; error: string; wakeOnFree?: WakeOnFree; delayMs?: number },
  now: Date,
): Promise<Map<string, FinishedAs>> {
  const { rows } = await db.query<{ id: string; final_status: FinishedAs }>({
    name: "taskLeaseRelease",
    text: `
      with input as (
        select * from unnest($1::int8[], $2::uuid[]) as i(id, token)
      ),
      source as (
        select t.id, t.queue, null::jsonb as result,
          case when t.status = 'cancelling' then t.error else $4::text end as final_error,
          case when t.status = 'cancelling' then 'canceled'
               when $3 then 'pending'
               when t.attempts >= t.max_attempts then 'stuck'
               else 'pending' end as final_status,
          $7::text as ended_by
        ${HELD_TASKS}
      ),
      returned as (
        update taskq.tasks t
        set status = 'pending', next_try_at = $5::timestamptz + make_interval(secs => $8 / 1000.0),
            lease_token = null, session_id = null, deadline_at = null,
            attempts = case when $3 then t.attempts - 1 else t.attempts end,
            started_at = case when $3 then null else t.started_at end,
            error = case when $3 then t.error else $4 end,
            status_changes = ${changeAppendSql("t.status_changes", {
              status: "'pending'::text",
              attempts: "case when $3 then t.attempts - 1 else t.attempts end",
              error: "case when $3 then '' else $4 end",
              at: "$5",
              seq: "t.log_seq",
              ended: "$7::text",
            })}
        from source s where t.id = s.id and s.final_status = 'pending'
        returning t.id, t.next_try_at
      ),
      ${archiveCtes("source", "$5")}
      select s.id::text, s.final_status,
             (select pg_notify('${CHANNEL_TASK}', string_agg(id::text, ',')) from source) as notified,
             (select pg_notify('${CHANNEL_DISPATCH}', '') from returned where next_try_at <= $5 limit 1) as woke,
             ${dueNotifySql("(select * from returned where next_try_at > $5) later")} as due,
             ${wakeOnFreeSql("$6")} as woke_freed
      from source s`,
    values: [
      leases.map((l) => l.id),
      leases.map((l) => l.leaseToken),
      opts.how !== "lost",
      opts.error,
      now,
      opts.wakeOnFree ?? [],
      opts.how,
      opts.delayMs ?? 0,
    ],
  });
  return new Map(rows.map((r) => [r.id, r.final_status]));
}
