/** Statements about queues: limit locks, pausing, and what each queue holds. */
import type { QueueCounts } from "../types.js";
import { CHANNEL_DISPATCH, type Db } from "./db.js";

/** The first key of taskq's advisory locks on queue limits (the second is the queue's hash). */
const LIMIT_LOCK_NAMESPACE = 7_302_145;
/** The second key of the lock that serialises claims under global_max_workers. */
const GLOBAL_LIMIT_LOCK = 0;

/**
 * Takes the transaction-level advisory locks that serialise claims on limited queues across
 * replicas: one per queue, in name order (so two claimers never wait on each other in a cycle), or the
 * one global lock. Held until the claiming transaction ends, so the next claimer counts its leases.
 */
export async function queueLimitLocksTake(db: Db, locks: { global: true } | { queues: string[] }): Promise<void> {
  if ("global" in locks) {
    await db.query("select pg_advisory_xact_lock($1, $2)", [LIMIT_LOCK_NAMESPACE, GLOBAL_LIMIT_LOCK]);
    return;
  }
  await db.query({
    name: "queueLimitLocksTake",
    text: `select pg_advisory_xact_lock($1, hashtext(q))
           from (select q from unnest($2::text[]) as q order by q) s`,
    values: [LIMIT_LOCK_NAMESPACE, locks.queues],
  });
}

/** Pauses or resumes a queue for every replica; resuming wakes the lease dispatchers. */
export async function queuePausedSet(db: Db, name: string, paused: boolean, now: Date): Promise<void> {
  await db.query({
    name: "queuePausedSet",
    text: `
      with changed as (
        insert into taskq.queues (name, paused, changed_at) values ($1, $2, $3)
        on conflict (name) do update set paused = excluded.paused, changed_at = excluded.changed_at
        returning paused
      )
      select case when not paused then pg_notify('${CHANNEL_DISPATCH}', '') end from changed`,
    values: [name, paused, now],
  });
}

/** Pending and running (or cancelling) tasks per queue, and which queues are paused. */
export async function queueCountsList(db: Db, now: Date): Promise<Map<string, QueueCounts>> {
  const { rows } = await db.query<{ name: string; pending: number; running: number; paused: boolean; oldest_due_ms: number }>({
    name: "queueCountsList",
    text: `
      select coalesce(c.queue, q.name) as name, coalesce(c.pending, 0)::int4 as pending,
             coalesce(c.running, 0)::int4 as running, coalesce(q.paused, false) as paused,
             greatest(0, coalesce(extract(epoch from $1::timestamptz - c.oldest_due) * 1000, 0))::float8 as oldest_due_ms
      from (select queue, count(*) filter (where status = 'pending') as pending,
                   count(*) filter (where status <> 'pending') as running,
                   min(next_try_at) filter (where status = 'pending' and next_try_at <= $1) as oldest_due
            from taskq.tasks group by queue) c
      full join taskq.queues q on q.name = c.queue`,
    values: [now],
  });
  return new Map(rows.map((r) => [r.name, { pending: r.pending, running: r.running, paused: r.paused, oldestDueMs: r.oldest_due_ms }]));
}
