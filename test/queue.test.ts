/** Queue semantics end to end: claim order, no double lease, retries, idempotency. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import { RetryableError, TaskFailedError } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";

describe("claim order", () => {
  let h: Harness;
  before(async () => (h = await Harness.create()));
  after(() => h.close());

  test("200 tasks of mixed priorities and delays run in priority, next_try_at, id order", async () => {
    const clock = new ManualClock(new Date("2026-03-01T12:00:00Z"));
    await h.replica({}, { clock });
    const client = h.client();
    const base = clock.now().getTime();
    const priorities = [0, 3, 5, 7, 10, 12];
    // Some due already, some delayed up to 20 s; several share a run_at so the id decides between them.
    const items = Array.from({ length: 200 }, (_, i) => ({
      type: "ordered",
      params: { i },
      priority: priorities[(i * 7) % priorities.length],
      runAt: new Date(base + (((i * 37) % 41) - 20) * 1_000),
    }));
    const handles = await client.dispatchBatch(items);
    const expected = items
      .map((item, i) => ({ ...item, id: BigInt(handles[i].id) }))
      .sort((a, b) => b.priority - a.priority || +a.runAt - +b.runAt || (a.id < b.id ? -1 : 1))
      .map((t) => t.id.toString());

    clock.advance(60 * 60_000); // every delay has passed
    const ran: string[] = [];
    const worker = h.worker({ concurrency: 1 });
    worker.register("ordered", (ctx) => void ran.push(ctx.id));
    await worker.start();
    await waitFor("200 tasks to run", () => ran.length === 200);
    await waitFor("200 outcomes", async () => (await h.count("history")) === 200);
    assert.deepEqual(ran, expected);
  });
});

describe("fairness", () => {
  let h: Harness;
  before(async () => (h = await Harness.create()));
  after(() => h.close());

  test("idle workers take turns: the least recently served gets the next task", async () => {
    await h.replica();
    const client = h.client();
    const workers = ["a", "b", "c", "d"].map(() => h.rawWorker());
    for (const w of workers) {
      w.hello(["turns"], 1);
      await w.next("welcome");
    }
    const served: number[] = [];
    for (let i = 0; i < 8; i++) {
      await client.dispatch("turns");
      // Whoever gets it finishes it and grants its credit again before the next task is dispatched.
      const got = await waitFor("a lease", async () => {
        for (const [n, w] of workers.entries()) {
          const lease = await w.next("lease", 0).catch(() => null);
          if (lease) return { n, lease };
        }
        return null;
      });
      served.push(got.n);
      const w = workers[got.n];
      w.send({ case: "finish", value: { taskId: got.lease.taskId, leaseToken: got.lease.leaseToken, outcome: { case: "success", value: {} } } });
      await w.next("finishAck");
      w.send({ case: "credits", value: { count: 1 } });
      await waitFor("the credit to arrive", async () => (await h.count("tasks")) === 0);
    }
    assert.deepEqual([0, 1, 2, 3].map((n) => served.filter((x) => x === n).length), [2, 2, 2, 2], `served in turn: ${served}`);
    for (const w of workers) await w.close();
  });
});

describe("no double lease", () => {
  let h: Harness;
  before(async () => (h = await Harness.create()));
  after(() => h.close());

  test("2,000 tasks, 4 worker streams of concurrency 8 on 2 replicas: each runs exactly once", async () => {
    const [a, b] = [await h.replica(), await h.replica()];
    const runs = new Map<string, number>();
    for (const replica of [a, a, b, b]) {
      const w = h.worker({ concurrency: 8 }, replica);
      w.register("once", async (ctx) => {
        runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
        await new Promise((r) => setImmediate(r));
        return ctx.params.n ?? null;
      });
      await w.start();
    }
    const client = h.client(a);
    const ids: string[] = [];
    for (let batch = 0; batch < 4; batch++) {
      const handles = await client.dispatchBatch(Array.from({ length: 500 }, (_, i) => ({ type: "once", params: { n: batch * 500 + i } })));
      ids.push(...handles.map((x) => x.id));
    }
    await waitFor("2,000 outcomes", async () => (await h.count("history")) === 2000, 60_000);
    assert.equal(new Set(ids).size, 2000);
    assert.equal(runs.size, 2000);
    assert.deepEqual([...new Set(runs.values())], [1], "some task ran more than once");
    const { rows } = await h.pool.query("select status, attempts, count(*)::int4 as n from taskq.history group by 1, 2");
    assert.deepEqual(rows, [{ status: "completed", attempts: 1, n: 2000 }]);
    assert.equal(await h.count("tasks"), 0);
  });
});

describe("retries", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    await h.replica();
  });
  after(() => h.close());

  test("fails twice, then succeeds: COMPLETED after 3 attempts, each retry after the delay", async () => {
    const starts: number[] = [];
    const w = h.worker({ concurrency: 2 });
    w.register("flaky", (ctx) => {
      starts.push(Date.now());
      if (ctx.attempt < 3) throw new RetryableError(`attempt ${ctx.attempt} failed`);
      return { ok: ctx.attempt };
    });
    w.register("doomed", () => {
      throw new RetryableError("still broken");
    });
    w.register("broken", () => {
      throw new Error("bad input, do not retry");
    });
    await w.start();
    const client = h.client();

    const flaky = await client.dispatch("flaky", {}, { retryDelayMs: 300 });
    assert.deepEqual(await flaky.result(), { ok: 3 });
    const info = await flaky.status();
    assert.equal(info.status, "completed");
    assert.equal(info.attempts, 3);
    assert.ok(starts[1] - starts[0] >= 300, `second attempt ${starts[1] - starts[0]} ms after the first`);
    assert.ok(starts[2] - starts[1] >= 300, `third attempt ${starts[2] - starts[1]} ms after the second`);

    const doomed = await client.dispatch("doomed", {}, { retryDelayMs: 20, maxAttempts: 4 });
    const err = await doomed.result().then(() => null, (e: unknown) => e);
    assert.ok(err instanceof TaskFailedError);
    assert.equal(err.status, "failed");
    assert.equal(err.task.attempts, 4);
    assert.equal(err.task.error, "still broken");

    const broken = await client.dispatch("broken", {}, { retryDelayMs: 20 });
    const err2 = await broken.result().then(() => null, (e: unknown) => e);
    assert.ok(err2 instanceof TaskFailedError);
    assert.equal(err2.task.attempts, 1, "a non-retryable failure ends at once");
  });
});

describe("retry delay by the injected clock", () => {
  let h: Harness;
  before(async () => (h = await Harness.create()));
  after(() => h.close());

  test("the default 30 s delay holds until the clock passes it", async () => {
    const clock = new ManualClock(new Date("2026-05-01T08:00:00Z"));
    const replica = await h.replica({}, { clock });
    const attempts: number[] = [];
    const w = h.worker({ concurrency: 1 });
    w.register("later", (ctx) => {
      attempts.push(ctx.attempt);
      if (ctx.attempt === 1) throw new RetryableError("try again");
      return "done";
    });
    await w.start();
    const handle = await h.client().dispatch("later");
    const pending = await waitFor("the retry to be scheduled", async () => {
      const t = await handle.status();
      return t.status === "pending" && t.attempts === 1 ? t : null;
    });
    assert.equal(pending.nextTryAt!.getTime(), clock.now().getTime() + 30_000);

    clock.advance(29_999);
    replica.engine.poke();
    const { rows } = await h.pool.query("select status from taskq.tasks where id = $1", [handle.id]);
    assert.equal(rows[0].status, "pending");

    clock.advance(1);
    replica.engine.poke();
    assert.equal(await handle.result(), "done");
    assert.deepEqual(attempts, [1, 2]);
  });
});

describe("idempotency", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    await h.replica();
  });
  after(() => h.close());

  test("the same key twice gives the same id and one task", async () => {
    const client = h.client();
    const first = await client.dispatch("idem", { n: 1 }, { idempotencyKey: "order-42" });
    const second = await client.dispatch("idem", { n: 2 }, { idempotencyKey: "order-42" });
    assert.equal(second.id, first.id);
    assert.equal(first.created, true);
    assert.equal(second.created, false);
    assert.equal(await h.count("tasks"), 1);
    assert.deepEqual((await second.status()).params, { n: 1 });
  });

  test("concurrent dispatches and repeats inside a batch name one task", async () => {
    const client = h.client();
    const results = await Promise.all(Array.from({ length: 20 }, () => client.dispatch("idem", {}, { idempotencyKey: "race" })));
    assert.equal(new Set(results.map((r) => r.id)).size, 1);
    assert.equal(results.filter((r) => r.created).length, 1);
    const batch = await client.dispatchBatch([
      { type: "idem", idempotencyKey: "b-1" },
      { type: "idem", idempotencyKey: "b-1" },
      { type: "idem", idempotencyKey: "race" },
      { type: "idem" },
    ]);
    assert.equal(batch[0].id, batch[1].id);
    assert.deepEqual(batch.map((b) => b.created), [true, false, false, true]);
    assert.equal(batch[2].id, results[0].id);
    const { rows } = await h.pool.query("select count(*)::int4 as n from taskq.tasks where idempotency_key in ('race', 'b-1')");
    assert.equal(rows[0].n, 2);
  });

  test("the server's connections run with JIT off, so claims stay fast on deep queues", async () => {
    const { rows } = await h.replicas[0].pool.query("show jit");
    assert.equal(rows[0].jit, "off");
  });

  test("dispatches made together share one statement, each answered on its own and in order", async () => {
    const engine = h.replicas[0].engine;
    const calls = Array.from({ length: 40 }, (_, i) =>
      engine.dispatch([{ type: "together", params: { i }, idempotencyKey: i % 10 === 3 ? "together-key" : undefined }]),
    );
    const results = (await Promise.all(calls)).map(([r]) => r);
    const keyed = results.filter((_, i) => i % 10 === 3);
    assert.equal(new Set(keyed.map((r) => r.id)).size, 1, "one task for the shared key");
    assert.deepEqual(keyed.map((r) => r.created), [true, false, false, false]);
    const { rows } = await h.pool.query<{ id: string; i: number; tx: string }>(
      "select id::text, (params->>'i')::int4 as i, xmin::text as tx from taskq.tasks where type = 'together' order by id",
    );
    assert.equal(rows.length, 37);
    assert.equal(new Set(rows.map((r) => r.tx)).size, 1, "one transaction wrote them all");
    const byId = new Map(rows.map((r) => [r.id, r.i]));
    results.forEach((r, i) => {
      if (i % 10 !== 3 || i === 3) assert.equal(byId.get(r.id), i, `call ${i} got the task it dispatched`);
    });
  });

  test("a key still names its task after the task finished", async () => {
    const w = h.worker();
    w.register("idem-run", () => "ran");
    await w.start();
    const client = h.client();
    const first = await client.dispatch("idem-run", {}, { idempotencyKey: "finished-key" });
    await first.result();
    const again = await client.dispatch("idem-run", {}, { idempotencyKey: "finished-key" });
    assert.equal(again.id, first.id);
    assert.equal(again.created, false);
    assert.equal((await again.status()).status, "completed");
  });
});
