/**
 * What holds keyed tasks back is visible: Status names the key limit or rate limit, ListQueues shows
 * per-key counts, the limits and their tokens, and /metrics counts the tasks each kind of limit holds.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Replica } from "../packages/server/src/app.js";
import { Harness, scrapeMetrics, waitFor } from "./helpers.js";

let h: Harness;
let replica: Replica;
const RATE = { tasks: 1, perMs: 3_600_000, burst: 1 };
before(async () => {
  h = await Harness.create();
  replica = await h.replica({
    queues: {
      tenants: { maxRunningPerKey: 1, keyWeights: { acme: 2 }, urgentPriority: 50 },
      metered: { rateLimit: RATE },
      perkey: { rateLimitPerKey: RATE },
    },
  });
});
after(() => h.close());

const running = (task: { status(): Promise<{ status: string }> }) => waitFor("the task to run", async () => (await task.status()).status === "running");

test("a task held by its key's max_running_per_key or by a rate limit says so, and the queues show it", async () => {
  const release: (() => void)[] = [];
  const worker = h.worker({ concurrency: 8 });
  worker.register("held", () => new Promise<void>((resolve) => release.push(resolve)));
  await worker.start();
  const client = h.client();

  // tenants: acme's first task runs, its second waits for it; another key is not held.
  const acme1 = await client.dispatch("held", {}, { queue: "tenants", concurrencyKey: "acme" });
  await running(acme1);
  const acme2 = await client.dispatch("held", {}, { queue: "tenants", concurrencyKey: "acme" });
  const other = await client.dispatch("held", {}, { queue: "tenants", concurrencyKey: "globex" });
  await running(other);
  // metered: one token an hour for the queue; perkey: one an hour for each key.
  const metered = [await client.dispatch("held", {}, { queue: "metered" }), await client.dispatch("held", {}, { queue: "metered" })];
  const perKey = [
    await client.dispatch("held", {}, { queue: "perkey", concurrencyKey: "a" }),
    await client.dispatch("held", {}, { queue: "perkey", concurrencyKey: "a" }),
    await client.dispatch("held", {}, { queue: "perkey", concurrencyKey: "b" }),
  ];
  await waitFor("one metered task and each perkey key's first to run", () => release.length === 5);

  const waiting = async (id: string) => (await client.status(id)).waiting;
  assert.deepEqual(await waiting(acme2.id), { reason: "key_limit", detail: `key "acme" runs 1 of queue "tenants"'s max_running_per_key 1` });
  const meteredWait = (await Promise.all(metered.map((t) => waiting(t.id)))).find((w) => w !== null)!;
  assert.equal(meteredWait.reason, "rate_limit");
  assert.match(meteredWait.detail, /^queue "metered"'s rate_limit \(1 per 3600000 ms, burst 1\) has no token free; the next comes in \d+ ms$/);
  const perKeyWait = (await Promise.all(perKey.map((t) => waiting(t.id)))).filter((w) => w !== null);
  assert.equal(perKeyWait.length, 1, "only key a's second task waits");
  assert.match(perKeyWait[0]!.detail, /^key "a" has no token free in queue "perkey"'s rate_limit_per_key \(1 per 3600000 ms, burst 1\); the next comes in \d+ ms$/);

  const { queues } = await client.listQueues();
  const byName = new Map(queues.map((q) => [q.name, q]));
  const tenants = byName.get("tenants")!;
  assert.equal(tenants.maxRunningPerKey, 1);
  assert.deepEqual(tenants.keyWeights, { acme: 2 });
  assert.equal(tenants.urgentPriority, 50);
  assert.equal(tenants.keyCount, 2);
  assert.deepEqual(tenants.keys, [
    { key: "acme", running: 1, pending: 1, tokens: null },
    { key: "globex", running: 1, pending: 0, tokens: null },
  ]);
  assert.equal(tenants.heldByKeyLimit, 1);
  assert.equal(tenants.heldByRateLimit, 0);
  const meteredQueue = byName.get("metered")!;
  assert.deepEqual({ ...meteredQueue.rateLimit!, tokens: Math.floor(meteredQueue.rateLimit!.tokens) }, { tasks: 1, perMs: 3_600_000, burst: 1, tokens: 0 });
  assert.equal(meteredQueue.heldByRateLimit, 1);
  const perKeyQueue = byName.get("perkey")!;
  assert.equal(perKeyQueue.heldByRateLimit, 1);
  assert.deepEqual(
    perKeyQueue.keys.map((k) => [k.key, k.running, k.pending, Math.floor(k.tokens!)]),
    [
      ["a", 1, 1, 0],
      ["b", 1, 0, 0],
    ],
  );
  assert.equal(byName.get("default")!.rateLimit, null);

  const { samples } = await scrapeMetrics(replica.server.url);
  assert.equal(samples.get('taskq_queue_held_tasks{queue="tenants",limit="key"}'), 1);
  assert.equal(samples.get('taskq_queue_held_tasks{queue="metered",limit="rate"}'), 1);
  assert.equal(samples.get('taskq_queue_held_tasks{queue="perkey",limit="rate"}'), 1);
  assert.equal(samples.get('taskq_queue_keys{queue="tenants"}'), 2);
  assert.ok((samples.get('taskq_queue_rate_tokens{queue="metered"}') ?? 1) < 1);

  // acme's first task ends: its second runs. Then all that run end; two stay held by an hour's rate.
  release.shift()!();
  await running(acme2);
  await waitFor("every task not held by a rate limit to end", async () => {
    for (const r of release.splice(0)) r();
    return (await h.count("tasks")) === 2;
  });
});
