/** What explainWaits needs to know about queues, keys and workers, in one statement. */
import type { QueueLimits } from "../types.js";
import type { Db } from "./db.js";
import { ratesSql, tokensSql } from "./rates.js";

export interface WaitingFacts {
  paused: Set<string>;
  /** Queue → tasks running or cancelling in it, on every replica (every queue that has any). */
  running: Map<string, number>;
  /** pairOf(queue, key) → tasks of that key running or cancelling in that queue (for the keys asked about). */
  keyRunning: Map<string, number>;
  /** pairOf(queue, key) → the bucket's tokens now, for rate-limited queues ("" key) and their keys asked about. */
  tokens: Map<string, number>;
  /** The live worker sessions: what they run, and their credits at their replica's last heartbeat. */
  workers: { types: string[]; queues: string[]; credits: number }[];
}

/** The map key of a (queue, concurrency key) pair; key "" for the queue itself. */
export const pairOf = (queue: string, key: string) => `${queue}\0${key}`;

export async function waitingFactsRead(
  db: Db,
  opts: { queues: string[]; keys: string[]; limits: QueueLimits & { staleAfterMs: number }; now: Date },
): Promise<WaitingFacts> {
  const { rows } = await db.query<{
    paused: string[];
    running: Record<string, number>;
    key_running: [string, string, number][];
    tokens: [string, string, number][];
    workers: WaitingFacts["workers"] | null;
  }>({
    name: "waitingFactsRead",
    text: `
      with rates as (${ratesSql("$4")})
      select
        array(select q.name from taskq.queues q where q.paused and q.name = any($1::text[])) as paused,
        (select coalesce(jsonb_object_agg(queue, n), '{}') from
           (select queue, count(*) as n from taskq.tasks where status <> 'pending' group by queue) r) as running,
        (select coalesce(jsonb_agg(jsonb_build_array(r.queue, r.key, r.n)), '[]') from
           (select queue, concurrency_key as key, count(*) as n from taskq.tasks
            where status <> 'pending' and concurrency_key = any($3::text[]) and queue = any($1::text[]) group by 1, 2) r) as key_running,
        (select coalesce(jsonb_agg(jsonb_build_array(x.queue, x.key, x.tokens)), '[]') from (
           select ra.queue, '' as key, ${tokensSql("b", "ra.q_rate", "ra.q_burst", "$5::timestamptz")} as tokens
           from rates ra left join taskq.rate_buckets b on b.queue = ra.queue and b.key = ''
           where ra.q_rate is not null and ra.queue = any($1::text[])
           union all
           select ra.queue, k.key, ${tokensSql("b", "ra.k_rate", "ra.k_burst", "$5::timestamptz")}
           from rates ra cross join unnest($3::text[]) as k(key)
           left join taskq.rate_buckets b on b.queue = ra.queue and b.key = k.key
           where ra.k_rate is not null and ra.queue = any($1::text[])) x) as tokens,
        (select jsonb_agg(jsonb_build_object('types', ws.task_types, 'queues', ws.queues, 'credits', ws.credits))
         from taskq.worker_sessions ws
         where ws.heartbeat_at > now() - make_interval(secs => $2 / 1000.0)) as workers`,
    values: [opts.queues, opts.limits.staleAfterMs, opts.keys, JSON.stringify(opts.limits.rates), opts.now],
  });
  const r = rows[0];
  const pairs = (list: [string, string, number][]) => new Map(list.map(([queue, key, n]) => [pairOf(queue, key), Number(n)]));
  return {
    paused: new Set(r.paused),
    running: new Map(Object.entries(r.running).map(([q, n]) => [q, Number(n)])),
    keyRunning: pairs(r.key_running),
    tokens: pairs(r.tokens),
    workers: r.workers ?? [],
  };
}
