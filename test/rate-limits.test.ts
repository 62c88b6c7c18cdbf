/**
 * Rate limits: a queue's rate_limit and its keys' rate_limit_per_key count task starts across every
 * worker and replica, and a task held back is leased when its token comes, not at the next poll.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Harness, waitFor } from "./helpers.js";

/** The most starts in any window of `perMs` (start times in epoch ms). */
function mostInWindow(starts: number[], perMs: number): number {
  const sorted = [...starts].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i] - sorted[j] >= perMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

describe("rate limits across two replicas and three workers", () => {
  let h: Harness;
  const QUEUE_RATE = { tasks: 5, perMs: 500, burst: 1 };
  const KEY_RATE = { tasks: 2, perMs: 400, burst: 1 };
  before(async () => {
    h = await Harness.create();
    // A poll interval far longer than the tests: a held task that ran only at the next poll would time out.
    const config = { pollIntervalMs: 600_000, queues: { metered: { rateLimit: QUEUE_RATE }, perkey: { rateLimitPerKey: KEY_RATE } } };
    await h.replica(config);
    await h.replica(config);
    const [a, b] = h.replicas;
    for (const replica of [a, a, b]) {
      const worker = h.worker({ concurrency: 4 }, replica);
      worker.register("metered", () => null);
      await worker.start();
    }
  });
  after(() => h.close());

  const starts = async (queue: string) =>
    (
      await h.pool.query<{ key: string | null; ms: number }>(
        "select concurrency_key as key, extract(epoch from started_at)::float8 * 1000 as ms from taskq.history where queue = $1",
        [queue],
      )
    ).rows;

  test("a queue's rate limit: at most tasks + burst starts in any window of per_ms, each held task leased when its token comes", async (t) => {
    const n = 24;
    await h.client().dispatchBatch(Array.from({ length: n }, () => ({ type: "metered", queue: "metered" })));
    await waitFor("every metered task to finish", async () => (await starts("metered")).length === n, 30_000);
    const ms = (await starts("metered")).map((r) => r.ms);
    const most = mostInWindow(ms, QUEUE_RATE.perMs);
    t.diagnostic(`most starts in ${QUEUE_RATE.perMs} ms: ${most}; first to last: ${Math.max(...ms) - Math.min(...ms)} ms`);
    assert.ok(most <= QUEUE_RATE.tasks + QUEUE_RATE.burst, `${most} starts in one window`);
    // The tokens are the only thing holding the tasks back: one comes every 100 ms, so the 24 starts
    // span at least 23 of them.
    assert.ok(Math.max(...ms) - Math.min(...ms) >= ((n - QUEUE_RATE.burst) * QUEUE_RATE.perMs) / QUEUE_RATE.tasks - 1);
  });

  test("a key's rate limit holds each key to its rate; keys do not hold each other back", async () => {
    const keys = ["k1", "k2", "k3"];
    const n = 8;
    await h.client(h.replicas[1]).dispatchBatch(keys.flatMap((key) => Array.from({ length: n }, () => ({ type: "metered", queue: "perkey", concurrencyKey: key }))));
    await waitFor("every keyed task to finish", async () => (await starts("perkey")).length === n * keys.length, 30_000);
    const rows = await starts("perkey");
    for (const key of keys) {
      const ms = rows.filter((r) => r.key === key).map((r) => r.ms);
      assert.equal(ms.length, n);
      assert.ok(mostInWindow(ms, KEY_RATE.perMs) <= KEY_RATE.tasks + KEY_RATE.burst, `${key}: ${mostInWindow(ms, KEY_RATE.perMs)} starts in one window`);
    }
    // The keys do not wait for each other: the first three starts are one of each.
    const firstThree = [...rows].sort((a, b) => a.ms - b.ms).slice(0, 3);
    assert.deepEqual(firstThree.map((r) => r.key).sort(), keys);
  });

  test("buckets that have refilled are deleted by the stats sampler; one still drawn on is kept", async () => {
    const buckets = async () => (await h.pool.query<{ queue: string; key: string }>("select queue, key from taskq.rate_buckets order by 1, 2")).rows;
    assert.ok((await buckets()).length >= 4, "the tests above drew on the queue's bucket and three keys'");
    // Drawn empty "an hour from now" (as by a replica whose clock runs ahead): not full for an hour.
    await h.pool.query("insert into taskq.rate_buckets values ('perkey', 'drawn-now', 0, now() + interval '1 hour')");
    await waitFor("the refilled buckets to go", async () => {
      await h.replicas[0].engine.sampleStats();
      return (await buckets()).length === 1;
    });
    assert.deepEqual(await buckets(), [{ queue: "perkey", key: "drawn-now" }]);
  });
});
