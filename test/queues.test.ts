/**
 * Named queues: max_workers per queue and global_max_workers hold across every worker and replica;
 * queues can be paused and resumed; dispatching to an undefined queue is refused.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, type TaskqError, type TaskContext } from "@taskq/sdk";
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

describe("pausing, listing, and undefined queues", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    const queues = { video: { maxWorkers: 2, timeoutMs: 7_200_000, maxAttempts: 3 } };
    await h.replica({ queues });
    await h.replica({ queues });
  });
  after(() => h.close());

  test("a paused queue leases nothing on any replica, other queues go on, and resuming runs its tasks", async () => {
    const [a, b] = h.replicas;
    const ran: string[] = [];
    const worker = h.worker({}, b);
    worker.register("clip", (ctx) => void ran.push(ctx.queue));
    await worker.start();

    const paused = await h.client(a).pauseQueue("video");
    assert.equal(paused.paused, true);
    const held = await h.client(a).dispatchBatch([1, 2, 3].map((n) => ({ type: "clip", queue: "video", params: { n } })));
    // A task in another queue runs to the end: the dispatcher on b has claimed since the pause.
    assert.equal(await (await h.client(a).dispatch("clip")).result(), null);
    assert.deepEqual(ran, ["default"]);
    for (const handle of held) assert.equal((await handle.status()).status, "pending");
    const listed = (await h.client(b).listQueues()).queues.find((q) => q.name === "video")!;
    assert.deepEqual({ paused: listed.paused, pending: listed.pending }, { paused: true, pending: 3 });

    const resumed = await h.client(b).resumeQueue("video");
    assert.equal(resumed.paused, false);
    await Promise.all(held.map((handle) => handle.result()));
    assert.deepEqual(ran.sort(), ["default", "video", "video", "video"]);
    await worker.stop();
  });

  test("ListQueues shows every queue's settings and what it holds, and the global limit", async () => {
    const client = h.client();
    const raw = h.rawWorker();
    raw.hello(["encode"], 1, ["video"]);
    const handles = await client.dispatchBatch([1, 2].map(() => ({ type: "encode", queue: "video" })));
    await raw.next("lease");
    const { queues, globalMaxWorkers, running } = await client.listQueues();
    assert.deepEqual(queues.map((q) => q.name), ["default", "scheduled", "video"]);
    const byName = new Map(queues.map((q) => [q.name, q]));
    // The second task waits for the queue's limit from its dispatch on: how long that is depends on the machine.
    const { oldestDueMs, ...video } = byName.get("video")!;
    assert.ok(oldestDueMs >= 0);
    assert.deepEqual(video, {
      name: "video",
      maxWorkers: 2,
      pending: 1,
      running: 1,
      paused: false,
      timeoutMs: 7_200_000,
      retryDelayMs: null,
      maxAttempts: 3,
      maxRunningPerKey: null,
      keyWeights: {},
      urgentPriority: null,
      rateLimit: null,
      rateLimitPerKey: null,
      keys: [],
      keyCount: 0,
      heldByKeyLimit: 0,
      heldByRateLimit: 0,
    });
    assert.equal(byName.get("scheduled")!.maxWorkers, 1, "the built-in scheduled queue runs one task at a time");
    assert.equal(byName.get("default")!.maxWorkers, null);
    assert.equal(globalMaxWorkers, null);
    assert.equal(running, 1);
    await raw.close();
    await Promise.all(handles.map((x) => x.interrupt()));
  });

  test("an undefined queue is INVALID_ARGUMENT naming it and the defined ones, and nothing changes", async () => {
    const client = h.client();
    const before = await h.count("tasks");
    const check = (err: TaskqError) => {
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.message, /queue "audio" is not defined \(defined: default, scheduled, video\)/);
      return true;
    };
    await assert.rejects(client.dispatch("clip", {}, { queue: "audio" }), check);
    await assert.rejects(client.pauseQueue("audio"), check);
    await assert.rejects(client.resumeQueue("audio"), check);
    assert.equal(await h.count("tasks"), before);
    assert.equal((await h.pool.query("select count(*)::int4 as n from taskq.queues where name = 'audio'")).rows[0].n, 0);
  });
});
