/**
 * What the dashboard's status tabs and charts read: CountTasks (tasks per status, capped at 10,000) and
 * GetStats (each queue's depth and finished tasks by status, sampled by the replicas); and the filters
 * the lists and bulk actions gained with them (type prefix, queue in history, a selection of ids).
 *
 * The replicas share a ManualClock that stands still, so a sample is written only when the test moves
 * the clock: exactly one per move, whichever replica writes it, with the finishes of exactly the
 * window before it.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, type StatsSample, type StatusCount, type TaskClient, type TaskqError } from "@taskq/sdk";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import type { Replica } from "../packages/server/src/app.js";
import { Harness, waitFor } from "./helpers.js";

const clock = new ManualClock(new Date("2026-06-01T09:00:00Z"));
let h: Harness;
let replicas: Replica[];
let client: TaskClient;

before(async () => {
  h = await Harness.create();
  const config = { queues: { charted: {}, other: {} }, statsIntervalMs: 1_000 };
  replicas = [await h.replica(config, { clock }), await h.replica(config, { clock })];
  client = h.client();
  const worker = h.worker({ concurrency: 8, queues: ["default", "charted", "other"] });
  worker.register("stats.ok", async () => ({ ok: true }));
  worker.register("stats.fail", async () => {
    throw new Error("no");
  });
  await worker.start();
});
after(() => h.close());

async function refused(call: Promise<unknown>, message: RegExp): Promise<void> {
  const err = (await call.then(() => null, (e: unknown) => e)) as TaskqError | null;
  assert.ok(err, `expected a refusal matching ${message}`);
  assert.equal(err.code, Code.InvalidArgument, err.message);
  assert.match(err.message, message);
}

const counts = (list: StatusCount[]) => Object.fromEntries(list.filter((c) => c.count > 0 || c.more).map((c) => [c.status, c.more ? `${c.count}+` : c.count]));

async function finished(ids: string[]): Promise<void> {
  await waitFor(`${ids.length} tasks finished`, async () => (await Promise.all(ids.map((id) => client.status(id)))).every((t) => ["completed", "failed", "canceled"].includes(t.status)));
}

test("CountTasks counts every status, narrowed by queue, type prefix and origin", async () => {
  const ok = await client.dispatchBatch([1, 2, 3].map(() => ({ type: "stats.ok", queue: "other" })));
  const failed = await client.dispatch("stats.fail", {}, { queue: "other", maxAttempts: 1 });
  await client.dispatchBatch([1, 2].map(() => ({ type: "stats.nobody", queue: "other" })));
  const canceled = await client.dispatch("stats.nobody", {}, { queue: "other" });
  await canceled.interrupt();
  await finished([...ok.map((t) => t.id), failed.id]);

  assert.deepEqual(counts(await client.countTasks({ queue: "other" })), { pending: 2, completed: 3, failed: 1, canceled: 1 });
  assert.deepEqual(counts(await client.countTasks({ queue: "other", typePrefix: "stats.no" })), { pending: 2, canceled: 1 });
  assert.deepEqual(counts(await client.countTasks({ queue: "other", origin: "system" })), {});
  // Every status is listed, zeros included, in a fixed order.
  assert.deepEqual(
    (await client.countTasks({ typePrefix: "nothing." })).map((c) => c.status),
    ["pending", "running", "cancelling", "completed", "failed", "canceled", "stuck"],
  );
  // "_" and "%" in a prefix are themselves, not patterns.
  assert.deepEqual(counts(await client.countTasks({ typePrefix: "stats_" })), {});
});

test("a count stops at 10,000 and says there are more", async () => {
  for (let i = 0; i < 11; i++) await client.dispatchBatch(Array.from({ length: 1_000 }, () => ({ type: "capped.nobody", queue: "other" })));
  assert.deepEqual(counts(await client.countTasks({ typePrefix: "capped." })), { pending: "10000+" });
  await client.interruptMany({ typePrefix: "capped." }, { reason: "cleanup" });
});

test("the lists filter by type prefix, and history by queue", async () => {
  const a = await client.dispatch("prefix.alpha.one", {}, { queue: "other" });
  const b = await client.dispatch("prefix.alpha.two", {}, { queue: "other" });
  await client.dispatch("prefix.beta", {}, { queue: "other" });
  const active = await client.listActive({ typePrefix: "prefix.alpha." });
  assert.deepEqual(active.tasks.map((t) => t.id).sort(), [a.id, b.id].sort());

  const inCharted = await client.dispatch("stats.ok", {}, { queue: "charted" });
  const inOther = await client.dispatch("stats.ok", {}, { queue: "other" });
  await finished([inCharted.id, inOther.id]);
  const history = await client.listHistory({ queue: "charted", typePrefix: "stats." });
  assert.ok(history.tasks.some((t) => t.id === inCharted.id));
  assert.ok(history.tasks.every((t) => t.queue === "charted"));
  await client.interruptMany({ typePrefix: "prefix." }, { reason: "cleanup" });
});

test("bulk actions on a selection of ids touch those tasks and no others", async () => {
  const tasks = await client.dispatchBatch([1, 2, 3].map(() => ({ type: "selected.nobody", queue: "other" })));
  const [first, second, third] = tasks.map((t) => t.id);
  assert.deepEqual(await client.interruptMany({ ids: [first, third] }, { reason: "picked" }), { count: 2, moreRemain: false });
  assert.equal((await client.status(first)).status, "canceled");
  assert.equal((await client.status(second)).status, "pending");
  assert.equal((await client.status(third)).status, "canceled");

  assert.deepEqual(await client.retryMany({ ids: [first, second] }), { count: 1, moreRemain: false }, "a pending task is not retried");
  assert.notEqual((await client.status(first)).retriedAs, "");
  await client.interruptMany({ typePrefix: "selected." });

  await refused(client.interruptMany({ ids: ["x"] }), /filter\.ids\[0\]: /);
  await refused(client.interruptMany({ ids: Array.from({ length: 501 }, (_, i) => String(i + 1)) }), /filter\.ids: at most 500 ids/);
});

test("GetStats: one sample per queue per interval, whichever replica writes it, with the window's finishes", async () => {
  const engines = replicas.map((r) => r.engine);
  // Each replica's timer samples too, but the clock stands still between moves: after a move, both
  // replicas' tries (timer or call) write exactly one sample at the new time.
  const sampleNow = async () => {
    await Promise.all(engines.map((e) => e.sampleStats()));
    const at = clock.now().getTime();
    return (await client.getStats({ queue: "charted", windowMs: 86_400_000 })).samples.filter((s) => s.time.getTime() === at);
  };
  clock.advance(60_000);
  assert.equal((await sampleNow()).length, 1);
  const start = clock.now();

  const ok = await client.dispatchBatch([1, 2, 3, 4].map(() => ({ type: "stats.ok", queue: "charted" })));
  const failed = await client.dispatchBatch([1, 2].map(() => ({ type: "stats.fail", queue: "charted", maxAttempts: 1 })));
  await client.dispatchBatch([1, 2, 3].map(() => ({ type: "stats.nobody", queue: "charted" })));
  await finished([...ok, ...failed].map((t) => t.id));

  clock.advance(60_000);
  const latest = await sampleNow();
  assert.equal(await engines[1].sampleStats(), false, "no second sample within half an interval");
  assert.deepEqual(latest.map(fields), [{ queue: "charted", pending: 3, running: 0, completed: 4, failed: 2, canceled: 0, stuck: 0 }]);
  assert.equal((await client.getStats()).intervalMs, 1_000);
  assert.deepEqual(
    (await client.getStats()).samples.filter((s) => s.time > start).map((s) => s.queue).sort(),
    ["charted", "default", "other", "scheduled"].sort(),
    "every queue has a sample, idle or not",
  );

  // Nothing finished since: the next sample counts no finishes again.
  clock.advance(60_000);
  const [next] = await sampleNow();
  assert.deepEqual(fields(next), { queue: "charted", pending: 3, running: 0, completed: 0, failed: 0, canceled: 0, stuck: 0 });
  await client.interruptMany({ queue: "charted" });
});

test("GetStats reads only its window, and refuses one longer than a day", async () => {
  const all = (await client.getStats({ windowMs: 86_400_000 })).samples;
  const recent = (await client.getStats({ windowMs: 90_000 })).samples;
  assert.ok(recent.length > 0 && recent.length < all.length, `${recent.length} of ${all.length}`);
  assert.ok(recent.every((s) => s.time.getTime() > clock.now().getTime() - 90_000));
  await refused(client.getStats({ windowMs: 86_400_001 }), /window: must be between 0 and 24 hours/);
});

const fields = (s: StatsSample) => ({
  queue: s.queue,
  pending: s.pending,
  running: s.running,
  completed: s.completed,
  failed: s.failed,
  canceled: s.canceled,
  stuck: s.stuck,
});
