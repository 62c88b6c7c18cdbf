/**
 * WatchTask: a snapshot, then every change, from whichever replica the worker is on, ending after the
 * final status. Resuming from the last log sequence misses nothing and repeats nothing; many watchers
 * share one LISTEN connection per replica; the SDK's watch survives a replica restart. Every status
 * change arrives, in its place among the log steps, however late the watcher reads.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { Replica } from "../packages/server/src/app.js";
import type { TaskContext, WatchEvent } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";
import { freePort } from "./processes.js";

let h: Harness;
let workerSide: Replica;
let watcherSide: Replica;
before(async () => {
  h = await Harness.create();
  workerSide = await h.replica();
  watcherSide = await h.replica();
});
after(() => h.close());

/** A gate a handler waits at until the test opens it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

const logSeqs = (events: WatchEvent[]) =>
  events.flatMap((e) => (e.type === "log" ? [e.step.seq] : e.type === "snapshot" ? e.task.log.map((s) => s.seq) : []));

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];

test("a watcher on replica B sees every log step, status value and status of a task running on replica A, in order", async (t) => {
  const sentAt = new Map<number, number>();
  const worker = h.worker({}, workerSide);
  worker.register("chatty", async (ctx: TaskContext) => {
    for (let i = 1; i <= 50; i++) {
      sentAt.set(i, performance.now());
      ctx.log(`step ${i}`);
      if (i % 10 === 0) ctx.progress(i * 2);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return "done";
  });
  const handle = await h.client(watcherSide).dispatch("chatty");
  const events: WatchEvent[] = [];
  const receivedAt = new Map<number, number>();
  const watching = (async () => {
    for await (const e of h.client(watcherSide).watch(handle.id)) {
      if (e.type === "log") receivedAt.set(e.step.seq, performance.now());
      events.push(e);
    }
  })();
  await waitFor("the watcher to subscribe", () => watcherSide.engine.watcherCount === 1);
  await worker.start();
  await watching;

  assert.equal(events[0].type, "snapshot");
  assert.equal(events[0].type === "snapshot" && events[0].task.status, "pending");
  assert.deepEqual(logSeqs(events), Array.from({ length: 50 }, (_, i) => i + 1), "every step once, in order");
  const messages = events.flatMap((e) => (e.type === "log" ? [e.step.message] : []));
  assert.deepEqual(messages, Array.from({ length: 50 }, (_, i) => `step ${i + 1}`));
  const progress = events.flatMap((e) => (e.type === "status_value" && e.key === "progress" ? [e.value as number] : []));
  assert.deepEqual(progress, [20, 40, 60, 80, 100], "each progress value, in order");
  const statuses = events.flatMap((e) => (e.type === "status" ? [e.status] : []));
  assert.deepEqual(statuses, ["running", "completed"]);
  const last = events.at(-1)!;
  assert.ok(last.type === "status" && last.status === "completed" && last.result === "done", "the stream ends after the final status");

  const delays = [...receivedAt].map(([seq, at]) => at - sentAt.get(seq)!).sort((a, b) => a - b);
  t.diagnostic(
    `watch delay across replicas over ${delays.length} log steps: median ${percentile(delays, 50).toFixed(1)} ms, ` +
      `p95 ${percentile(delays, 95).toFixed(1)} ms, max ${delays.at(-1)!.toFixed(1)} ms`,
  );
  await worker.stop();
});

test("a watcher that reconnects with the last sequence it saw misses nothing and sees nothing twice", async () => {
  const halfway = gate();
  const worker = h.worker({}, workerSide);
  worker.register("paused", async (ctx) => {
    for (let i = 1; i <= 40; i++) {
      if (i === 21) await halfway.opened;
      ctx.log(`step ${i}`);
    }
    return null;
  });
  const handle = await h.client(watcherSide).dispatch("paused");
  await worker.start();

  const client = h.client(watcherSide);
  const first: WatchEvent[] = [];
  for await (const e of client.watch(handle.id)) {
    first.push(e);
    if (logSeqs(first).at(-1) === 20) break; // the watcher goes away
  }
  halfway.open();
  await waitFor("more steps to be written", async () => (await handle.status()).log.length >= 30);
  const second: WatchEvent[] = [];
  for await (const e of client.watch(handle.id, { afterSeq: 20 })) second.push(e);

  assert.equal(second[0].type, "snapshot");
  assert.ok(second[0].type === "snapshot" && second[0].task.log.every((s) => s.seq > 20), "the snapshot's log starts after the sequence given");
  assert.deepEqual([...logSeqs(first), ...logSeqs(second)], Array.from({ length: 40 }, (_, i) => i + 1));
  const end = second.at(-1)!;
  assert.equal(end.type === "snapshot" ? end.task.status : end.type === "status" ? end.status : null, "completed");
  await worker.stop();
});

test("forty watchers of one task share the replica's one LISTEN connection", async () => {
  const release = gate();
  const worker = h.worker({}, workerSide);
  worker.register("watched", async (ctx) => {
    ctx.log("begun");
    await release.opened;
    return 7;
  });
  const handle = await h.client(watcherSide).dispatch("watched");
  const client = h.client(watcherSide);
  const watchers = Array.from({ length: 40 }, async () => {
    const seen: WatchEvent[] = [];
    for await (const e of client.watch(handle.id)) seen.push(e);
    return seen;
  });
  await waitFor("forty watchers", () => watcherSide.engine.watcherCount === 40);
  const listeners = await h.pool.query<{ n: number }>(
    "select count(*)::int4 as n from pg_stat_activity where datname = current_database() and application_name = 'taskq-listen'",
  );
  assert.equal(listeners.rows[0].n, h.replicas.length, "one LISTEN connection per replica, whatever the watchers");

  await worker.start();
  release.open();
  for (const seen of await Promise.all(watchers)) {
    const last = seen.at(-1)!;
    assert.ok(last.type === "status" && last.status === "completed" && last.result === 7);
  }
  assert.equal(watcherSide.engine.watcherCount, 0);
  await worker.stop();
});

test("the SDK's watch resumes on its own when the watched replica restarts", async () => {
  const port = await freePort();
  let restartable = await h.replica({ port });
  const halfway = gate();
  const worker = h.worker({}, workerSide);
  worker.register("survivor", async (ctx) => {
    for (let i = 1; i <= 20; i++) {
      if (i === 11) await halfway.opened;
      ctx.log(`step ${i}`);
    }
    return "ok";
  });
  const handle = await h.client(restartable).dispatch("survivor");
  await worker.start();

  const events: WatchEvent[] = [];
  let restarted = false;
  const client = h.client(restartable);
  for await (const e of client.watch(handle.id)) {
    events.push(e);
    if (!restarted && logSeqs(events).at(-1) === 10) {
      restarted = true;
      await h.stopReplica(restartable);
      halfway.open();
      await waitFor("steps written while the replica was down", async () => (await h.client(workerSide).status(handle.id)).log.length === 20);
      restartable = await h.replica({ port });
    }
  }
  assert.ok(restarted);
  assert.equal(events.filter((e) => e.type === "snapshot").length, 1, "one snapshot, however many reconnects");
  assert.deepEqual(logSeqs(events), Array.from({ length: 20 }, (_, i) => i + 1));
  const statuses = events.flatMap((e) => (e.type === "status" ? [e.status] : []));
  assert.deepEqual(statuses.slice(-1), ["completed"]);
  assert.equal(statuses.filter((s) => s === "completed").length, 1);
  await worker.stop();
});

test("a watcher that reads only after two attempts ended still reports each status change, in order with the log, with its own error", async () => {
  const handle = await h.client(watcherSide).dispatch("twice", {}, { maxAttempts: 3, retryDelayMs: 0 });
  const abort = new AbortController();
  // The engine's watch is a generator: after the snapshot it reads nothing until asked for more.
  const watch = watcherSide.engine.watch(handle.id, 0, abort.signal);
  const snapshot = (await watch.next()).value;
  assert.ok(snapshot?.kind === "snapshot" && snapshot.task.status === "pending");

  const raw = h.rawWorker(workerSide);
  raw.hello(["twice"], 2);
  for (const [i, outcome] of [
    [1, { case: "retry", value: { error: "boom", delay: durationFromMs(0) } }],
    [2, { case: "success", value: { result: { kind: { case: "stringValue", value: "ok" } } } }],
  ] as const) {
    const lease = await raw.next("lease");
    assert.equal(lease.attempt, i);
    raw.send({ case: "logStep", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, message: `in attempt ${i}` } });
    raw.send({ case: "finish", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, outcome } });
    await raw.next("finishAck");
  }

  const seen: string[] = [];
  for (let e = await watch.next(); !e.done; e = await watch.next()) {
    const ev = e.value;
    if (ev.kind === "log") seen.push(`log ${ev.entry.message}`);
    if (ev.kind === "status") {
      const c = ev.change;
      seen.push(`${c.status} ${c.attempts} worker=${c.worker} error=${c.error}${c.status === "completed" ? ` result=${ev.task.result}` : ""}`);
    }
  }
  assert.deepEqual(seen, [
    "running 1 worker=raw error=",
    "log in attempt 1",
    "pending 1 worker= error=boom",
    "running 2 worker=raw error=",
    "log in attempt 2",
    "completed 2 worker=raw error= result=ok",
  ]);
  assert.equal((await h.client(watcherSide).status(handle.id)).error, "", "a completed task's error is empty, whatever an earlier attempt left");
});

test("a lease reaches watchers at once, before the handler writes anything", async () => {
  const handle = await h.client(watcherSide).dispatch("quiet");
  const client = h.client(watcherSide);
  const events: WatchEvent[] = [];
  const watching = (async () => {
    for await (const e of client.watch(handle.id)) events.push(e);
  })();
  await waitFor("the watcher to subscribe", () => watcherSide.engine.watcherCount === 1);
  const raw = h.rawWorker(workerSide);
  raw.hello(["quiet"], 1);
  const lease = await raw.next("lease");
  // Nothing else changes the task until RUNNING arrives.
  await waitFor("RUNNING to reach the watcher", () => events.some((e) => e.type === "status" && e.status === "running"));
  raw.send({ case: "finish", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, outcome: { case: "failure", value: { error: "no" } } } });
  await watching;
  assert.deepEqual(
    events.flatMap((e) => (e.type === "status" ? [`${e.status} ${e.error}`] : [])),
    ["running ", "failed no"],
  );
});

test("a status value sent with no value holds JSON null, in Status and for watchers", async () => {
  const handle = await h.client(watcherSide).dispatch("unset");
  const raw = h.rawWorker(workerSide);
  raw.hello(["unset"], 1);
  const lease = await raw.next("lease");
  raw.send({ case: "statusValue", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, key: "phase", value: { kind: { case: "stringValue", value: "a" } } } });
  raw.send({ case: "statusValue", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, key: "phase" } });
  raw.send({ case: "logStep", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, message: "after both" } });
  await waitFor("the log step after both values", async () => (await handle.status()).log.length === 1);
  assert.deepEqual((await handle.status()).statusValues, { phase: null });
  raw.send({ case: "finish", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, outcome: { case: "success", value: {} } } });
  const events: WatchEvent[] = [];
  for await (const e of h.client(watcherSide).watch(handle.id)) events.push(e);
  assert.ok(events[0].type === "snapshot" && events[0].task.statusValues.phase === null);
});
