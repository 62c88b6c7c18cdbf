/**
 * Named queues: max_workers per queue and global_max_workers hold across every worker and replica;
 * queues can be paused and resumed; dispatching to an undefined queue is refused.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { TaskContext } from "../sdk/index.js";
import { Harness, waitFor } from "./helpers.js";

describe("limits across two replicas and three workers", () => {
  let h: Harness;
  const LIMITS = { narrow: 2, wide: 4 };
  const GLOBAL = 5;
  before(async () => {
    h = await Harness.create();
    const queues = { narrow: { maxWorkers: LIMITS.narrow }, wide: { maxWorkers: LIMITS.wide } };
    await h.replica({ queues, globalMaxWorkers: GLOBAL });
    await h.replica({ queues, globalMaxWorkers: GLOBAL });
  });
  after(() => h.close());

  test("never more than max_workers of a queue, nor global_max_workers in all, at any moment", async (t) => {
    const inFlight: Record<string, number> = { narrow: 0, wide: 0, default: 0, all: 0 };
    const most: Record<string, number> = { narrow: 0, wide: 0, default: 0, all: 0 };
    const handler = async (ctx: TaskContext) => {
      for (const key of [ctx.queue, "all"]) most[key] = Math.max(most[key], ++inFlight[key]);
      await new Promise((resolve) => setTimeout(resolve, 2 + (Number(ctx.params.n) % 9)));
      for (const key of [ctx.queue, "all"]) inFlight[key] -= 1;
    };
    const [a, b] = h.replicas;
    for (const replica of [a, a, b]) {
      const worker = h.worker({ concurrency: 4 }, replica);
      worker.register("limited", handler);
      await worker.start();
    }

    // What the database says runs, sampled while the tasks run: the property across replicas.
    const sampled: Record<string, number> = { narrow: 0, wide: 0, default: 0, all: 0 };
    let sampling = true;
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await h.pool.query<{ queue: string; n: number }>(
          "select queue, count(*)::int4 as n from taskq.tasks where status <> 'pending' group by queue",
        );
        let all = 0;
        for (const r of rows) {
          sampled[r.queue] = Math.max(sampled[r.queue] ?? 0, r.n);
          all += r.n;
        }
        sampled.all = Math.max(sampled.all, all);
        samples += 1;
      }
    })();

    const queues = ["narrow", "wide", "default"];
    const handles = await h.client(a).dispatchBatch(Array.from({ length: 360 }, (_, n) => ({ type: "limited", queue: queues[n % 3], params: { n } })));
    await waitFor("every task to finish", async () => (await h.count("history")) === handles.length, 60_000);
    sampling = false;
    await sampler;
    t.diagnostic(`most running in handlers ${JSON.stringify(most)}; in ${samples} database samples ${JSON.stringify(sampled)}`);

    assert.equal(most.narrow, LIMITS.narrow, "the narrow queue ran at its limit, never above");
    assert.ok(most.wide <= LIMITS.wide);
    assert.equal(most.all, GLOBAL, "all queues together ran at the global limit, never above");
    assert.ok(sampled.narrow <= LIMITS.narrow && sampled.wide <= LIMITS.wide && sampled.all <= GLOBAL);
    const { rows } = await h.pool.query("select count(*)::int4 as n from taskq.history where status = 'completed'");
    assert.equal(rows[0].n, handles.length);
  });
});
