/** Rate limits' token buckets (taskq.rate_buckets, migration 017), as the claim and ListQueues read them. */
import type { RateLimits } from "../types.js";
import type { Db } from "./db.js";

/**
 * The body of a `rates` CTE: per rate-limited queue of `param` (a RateLimits as JSON), the tokens per
 * ms and the burst of the queue's own bucket (q_) and of each key's (k_); null where it has none.
 */
export const ratesSql = (param: string) => `
  select r.key as queue,
         (r.value -> 'queue' ->> 'tasks')::float8 / (r.value -> 'queue' ->> 'perMs')::float8 as q_rate,
         (r.value -> 'queue' ->> 'burst')::float8 as q_burst,
         (r.value -> 'key' ->> 'tasks')::float8 / (r.value -> 'key' ->> 'perMs')::float8 as k_rate,
         (r.value -> 'key' ->> 'burst')::float8 as k_burst
  from jsonb_each(${param}::jsonb) r`;

/**
 * The tokens of `bucket` (a rate_buckets row, or nulls) at `now`: what it held at its last draw plus
 * what the rate added since, up to its burst; full when it has no row. A clock that reads earlier than
 * the last draw's (another replica's, skewed) adds nothing and takes some away: never more starts.
 */
export const tokensSql = (bucket: string, rate: string, burst: string, now: string) =>
  `least(${burst}, coalesce(${bucket}.tokens + extract(epoch from ${now} - ${bucket}.at) * 1000 * ${rate}, ${burst}))`;

/**
 * Deletes the buckets that have refilled (a missing row reads as a full bucket, so nothing changes) and
 * those of limits no longer configured. A claim that draws on a bucket meanwhile updates its row; the
 * delete then finds the row no longer full and leaves it.
 */
export async function rateBucketsPrune(db: Db, rates: RateLimits, now: Date): Promise<number> {
  const { rowCount } = await db.query({
    name: "rateBucketsPrune",
    text: `
      with rates as (${ratesSql("$1")})
      delete from taskq.rate_buckets b
      where not exists (
        select 1 from rates ra
        where ra.queue = b.queue
          and case when b.key = '' then ${tokensSql("b", "ra.q_rate", "ra.q_burst", "$2::timestamptz")} < ra.q_burst
                   else ${tokensSql("b", "ra.k_rate", "ra.k_burst", "$2::timestamptz")} < ra.k_burst end)`,
    values: [JSON.stringify(rates), now],
  });
  return rowCount ?? 0;
}
