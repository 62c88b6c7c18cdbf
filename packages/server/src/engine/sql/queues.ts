/** Statements about queues: limit locks, pausing, and what each queue holds. */
import type { KeyCounts, QueueCounts, RateLimits } from "../types.js";
import { CHANNEL_DISPATCH, type Db } from "./db.js";
import { ratesSql, tokensSql } from "./rates.js";

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

/** The most keys of one queue that ListQueues lists. */
const KEYS_LISTED = 100;

/**
 * Pending and running (or cancelling) tasks per queue, which queues are paused, and per key: its
 * counts, what holds its due tasks back (max_running_per_key, a rate limit without tokens) and its
 * bucket's tokens. One read of the task table, grouped by queue and key.
 */
export async function queueCountsList(db: Db, now: Date, limits: { perKey: Record<string, number>; rates: RateLimits }): Promise<Map<string, QueueCounts>> {
  const { rows } = await db.query<QueueRow>({
    name: "queueCountsList",
    text: `
      with rates as (${ratesSql("$3")}),
      per_key as (
        select queue, concurrency_key as key,
               count(*) filter (where status = 'pending') as pending,
               count(*) filter (where status <> 'pending') as running,
               count(*) filter (where status = 'pending' and next_try_at <= $1) as due,
               min(next_try_at) filter (where status = 'pending' and next_try_at <= $1) as oldest_due
        from taskq.tasks group by queue, concurrency_key
      ),
      held as (
        select k.*, qt.tokens as queue_tokens, kt.tokens as key_tokens,
               k.key is not null and k.running >= ($2::jsonb ->> k.queue)::int4 as at_limit
        from per_key k
        left join lateral (
          select ${tokensSql("b", "ra.q_rate", "ra.q_burst", "$1::timestamptz")} as tokens
          from rates ra left join taskq.rate_buckets b on b.queue = ra.queue and b.key = ''
          where ra.queue = k.queue and ra.q_rate is not null
        ) qt on true
        left join lateral (
          select ${tokensSql("b", "ra.k_rate", "ra.k_burst", "$1::timestamptz")} as tokens
          from rates ra left join taskq.rate_buckets b on b.queue = ra.queue and b.key = k.key
          where ra.queue = k.queue and ra.k_rate is not null and k.key is not null
        ) kt on true
      ),
      c as (
        select h.queue, sum(h.pending)::int4 as pending, sum(h.running)::int4 as running, min(h.oldest_due) as oldest_due,
               (count(*) filter (where h.key is not null))::int4 as key_count,
               coalesce(sum(h.due) filter (where h.at_limit), 0)::int4 as held_by_key_limit,
               coalesce(sum(h.due) filter (where not coalesce(h.at_limit, false) and (h.queue_tokens < 1 or h.key_tokens < 1)), 0)::int4 as held_by_rate_limit,
               (select jsonb_agg(jsonb_build_object('key', x.key, 'pending', x.pending, 'running', x.running, 'tokens', x.key_tokens)
                                 order by x.running desc, x.pending desc, x.key)
                from (select * from held x where x.queue = h.queue and x.key is not null
                      order by x.running desc, x.pending desc, x.key limit ${KEYS_LISTED}) x) as keys
        from held h group by h.queue
      )
      select coalesce(c.queue, q.name) as name, coalesce(c.pending, 0) as pending, coalesce(c.running, 0) as running,
             coalesce(q.paused, false) as paused,
             greatest(0, coalesce(extract(epoch from $1::timestamptz - c.oldest_due) * 1000, 0))::float8 as oldest_due_ms,
             coalesce(c.key_count, 0) as key_count, coalesce(c.keys, '[]') as keys,
             coalesce(c.held_by_key_limit, 0) as held_by_key_limit, coalesce(c.held_by_rate_limit, 0) as held_by_rate_limit,
             (select ${tokensSql("b", "ra.q_rate", "ra.q_burst", "$1::timestamptz")}
              from rates ra left join taskq.rate_buckets b on b.queue = ra.queue and b.key = ''
              where ra.queue = coalesce(c.queue, q.name) and ra.q_rate is not null) as rate_tokens
      from c full join taskq.queues q on q.name = c.queue`,
    values: [now, JSON.stringify(limits.perKey), JSON.stringify(limits.rates)],
  });
  return new Map(
    rows.map((r) => [
      r.name,
      {
        pending: r.pending,
        running: r.running,
        paused: r.paused,
        oldestDueMs: r.oldest_due_ms,
        keyCount: r.key_count,
        keys: r.keys,
        heldByKeyLimit: r.held_by_key_limit,
        heldByRateLimit: r.held_by_rate_limit,
        rateTokens: r.rate_tokens,
      },
    ]),
  );
}

interface QueueRow {
  name: string;
  pending: number;
  running: number;
  paused: boolean;
  oldest_due_ms: number;
  key_count: number;
  keys: KeyCounts[];
  held_by_key_limit: number;
  held_by_rate_limit: number;
  rate_tokens: number | null;
}
