/**
 * Keyed flow control: within a queue, the keys (concurrency_key) with due work take turns, weighted
 * per key, urgent priorities first; max_running_per_key holds across every worker and replica.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DispatchItem, TaskContext } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";

describe("keys take turns", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    await h.replica({ queues: { urgent: { urgentPriority: 10 }, weighted: { keyWeights: { heavy: 3 } } } });
  });
  after(() => h.close());

  /** Dispatches `items` in order, then runs them one at a time on one worker; the keys in the order they started. */
  async function runInOrder(type: string, items: DispatchItem[]): Promise<string[]> {
    const client = h.client();
    for (let i = 0; i < items.length; i += 500) await client.dispatchBatch(items.slice(i, i + 500));
    const started: string[] = [];
    const worker = h.worker({ concurrency: 1 });
    worker.register(type, (ctx: TaskContext) => {
      started.push(`${ctx.concurrencyKey || "-"}${ctx.params.tag ? `:${ctx.params.tag}` : ""}`);
    });
    await worker.start();
    await waitFor(`${items.length} ${type} tasks to run`, () => started.length === items.length, 60_000);
    await worker.stop();
    return started;
  }

  test("a key with 90 % of the backlog, dispatched first, takes one turn per round like every other key", async () => {
    const type = "fair.rounds";
    const small = Array.from({ length: 10 }, (_, i) => `small-${i}`);
    const items: DispatchItem[] = [
      ...Array.from({ length: 900 }, () => ({ type, concurrencyKey: "big" })),
      { type, concurrencyKey: "big", priority: 5, params: { tag: "urgent-within-big" } },
      ...small.flatMap((key) => Array.from({ length: 10 }, () => ({ type, concurrencyKey: key }))),
      ...Array.from({ length: 50 }, () => ({ type })),
    ];
    const started = await runInOrder(type, items);

    // Twelve pairs have due work (big, ten small keys, the unkeyed tasks): each takes one lease per round
    // of twelve, so the small keys' ten tasks each are done within the first ten rounds.
    const rounds = started.slice(0, 120);
    for (const key of small) assert.equal(rounds.filter((k) => k === key).length, 10, `${key} in the first 120: ${rounds.join(" ")}`);
    assert.equal(rounds.filter((k) => k.startsWith("big")).length, 10);
    assert.equal(rounds.filter((k) => k === "-").length, 10);
    // Priority still orders tasks within a key.
    assert.equal(started.find((k) => k.startsWith("big")), "big:urgent-within-big");
    // Then the big key and the unkeyed tasks alternate until the unkeyed ones are done.
    const next = started.slice(120, 200);
    assert.equal(next.filter((k) => k === "-").length, 40, next.join(" "));
  });

  test("a key weighted 3 takes three leases per round", async () => {
    const type = "fair.weighted";
    const items: DispatchItem[] = ["heavy", "light"].flatMap((key) => Array.from({ length: 40 }, () => ({ type, queue: "weighted", concurrencyKey: key })));
    const started = await runInOrder(type, items);
    const first = started.slice(0, 40);
    assert.equal(first.filter((k) => k === "heavy").length, 30, first.join(" "));
    assert.equal(first.filter((k) => k === "light").length, 10, first.join(" "));
  });

  test("a task at or above its queue's urgent_priority goes before every key's turn; one below it waits for its turn", async () => {
    const type = "fair.urgent";
    const items: DispatchItem[] = [
      ...Array.from({ length: 30 }, () => ({ type, queue: "urgent", concurrencyKey: "a-big" })),
      { type, queue: "urgent", concurrencyKey: "m-key", priority: 9, params: { tag: "p9" } },
      { type, queue: "urgent", concurrencyKey: "z-key", priority: 10, params: { tag: "p10" } },
    ];
    const started = await runInOrder(type, items);
    assert.equal(started[0], "z-key:p10");
    assert.deepEqual(started.slice(1, 3), ["a-big", "m-key:p9"], "then the turns, in key order");
  });
});

describe("max_running_per_key across two replicas and three workers", () => {
  let h: Harness;
  const PER_KEY = 2;
  before(async () => {
    h = await Harness.create();
    const queues = { tenants: { maxRunningPerKey: PER_KEY } };
    await h.replica({ queues });
    await h.replica({ queues });
  });
  after(() => h.close());

  test("never more than max_running_per_key tasks of one key run, at any moment; unkeyed tasks are not held", async (t) => {
    const keys = ["acme", "globex", "initech", "umbrella", "hooli"];
    const inFlight = new Map<string, number>();
    const most = new Map<string, number>();
    const handler = async (ctx: TaskContext) => {
      const key = ctx.concurrencyKey || "-";
      const n = (inFlight.get(key) ?? 0) + 1;
      inFlight.set(key, n);
      most.set(key, Math.max(most.get(key) ?? 0, n));
      await new Promise((resolve) => setTimeout(resolve, 2 + (Number(ctx.params.n) % 9)));
      inFlight.set(key, (inFlight.get(key) ?? 0) - 1);
    };
    const [a, b] = h.replicas;
    for (const replica of [a, a, b]) {
      const worker = h.worker({ concurrency: 4 }, replica);
      worker.register("keyed", handler);
      await worker.start();
    }

    // What the database says runs, per key, sampled while the tasks run: the property across replicas.
    const sampled = new Map<string, number>();
    let sampling = true;
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await h.pool.query<{ key: string; n: number }>(
          "select concurrency_key as key, count(*)::int4 as n from taskq.tasks where status <> 'pending' and concurrency_key is not null group by 1",
        );
        for (const r of rows) sampled.set(r.key, Math.max(sampled.get(r.key) ?? 0, r.n));
        samples += 1;
      }
    })();

    const items = Array.from({ length: 300 }, (_, n) => ({ type: "keyed", queue: "tenants", params: { n }, concurrencyKey: n % 6 === 5 ? undefined : keys[n % 6] }));
    await h.client(b).dispatchBatch(items);
    await waitFor("every task to finish", async () => (await h.count("history")) === items.length, 60_000);
    sampling = false;
    await sampler;
    t.diagnostic(`most running in handlers ${JSON.stringify(Object.fromEntries(most))}; in ${samples} database samples ${JSON.stringify(Object.fromEntries(sampled))}`);

    for (const key of keys) {
      assert.ok((most.get(key) ?? 0) <= PER_KEY, `${key} ran ${most.get(key)} at once in handlers`);
      assert.ok((sampled.get(key) ?? 0) <= PER_KEY, `${key} ran ${sampled.get(key)} at once in the database`);
    }
    assert.ok(Math.max(...keys.map((k) => most.get(k) ?? 0)) === PER_KEY, "keys ran at their limit");
    const { rows } = await h.pool.query("select count(*)::int4 as n from taskq.history where status = 'completed'");
    assert.equal(rows[0].n, items.length);
  });
});
