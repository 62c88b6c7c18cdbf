-- taskq schema, version 17: rate limits' token buckets.
--
-- rate_buckets  one row per (queue, key) whose rate limit a claim has drawn on: key '' for the queue's
--               own limit (rate_limit), else a concurrency key (rate_limit_per_key). `tokens` is what
--               the bucket held at `at`; it refills at the configured rate up to its burst, so a row
--               is read as min(burst, tokens + elapsed × rate), and a missing row is a full bucket.
--               Claims on a rate-limited queue hold its limit lock, so reading and writing a bucket
--               never race. A bucket that has refilled is deleted by the stats sampler.
--
-- Cost: nothing for queues without a rate limit; one row written per bucket a claim draws on.
create table taskq.rate_buckets (
  queue text not null,
  key text not null,
  tokens float8 not null,
  at timestamptz not null,
  primary key (queue, key)
);
