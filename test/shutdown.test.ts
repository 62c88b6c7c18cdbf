/**
 * Graceful shutdown. A server replica that stops leases nothing new and refuses new workers, lets
 * running tasks finish within its grace period, then tells the workers to stop and returns what is left
 * to the queue with the attempt given back. SIGTERM does this for `npm start`; a worker process on
 * SIGTERM finishes its running handlers, then closes. No task is lost or left stuck.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "@taskq/protocol/grpc";
import { Code, TaskAbortedError, TaskqError } from "@taskq/sdk";
import { connect } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";
import { freePort, startTs } from "./processes.js";

let h: Harness;
before(async () => (h = await Harness.create()));
after(() => h.close());

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

test("a stopping replica leases nothing new, refuses new workers, says NOT_SERVING, and lets running tasks finish", async () => {
  const stopping = await h.replica();
  const other = await h.replica();
  const release = gate();
  const worker = h.worker({ concurrency: 2 }, stopping);
  worker.register("drain", async () => {
    await release.opened;
    return "finished during the drain";
  });
  await worker.start();
  const running = await h.client(other).dispatch("drain");
  await waitFor("the task to run", async () => (await running.status()).status === "running");

  const stopped = h.stopReplica(stopping, { graceMs: 30_000 });
  await waitFor("the drain to begin", () => stopping.engine.draining);
  const conn = connect({ url: stopping.server.url });
  const health = await createClient(Health, conn.transport).check({});
  conn.close();
  assert.equal(health.status, HealthCheckResponse_ServingStatus.NOT_SERVING);
  const latecomer = h.rawWorker(stopping);
  latecomer.hello(["drain"], 1);
  const refused = TaskqError.from(await latecomer.result());
  assert.equal(refused.code, Code.Unavailable);
  assert.match(refused.message, /shutting down/);

  // The worker has a free credit, but the stopping replica leases nothing more.
  const waiting = await h.client(other).dispatch("drain");
  release.open();
  assert.equal(await running.result(), "finished during the drain");
  await stopped;
  assert.equal((await running.status()).attempts, 1);
  assert.equal((await waiting.status()).status, "pending", "nothing was leased during the drain");
  await worker.stop({ graceMs: 1_000 });
});

test("after the grace period the worker is told to stop, and its task goes back to PENDING with the attempt given back", async () => {
  const stopping = await h.replica();
  const reasons: unknown[] = [];
  const worker = h.worker({}, stopping);
  worker.register("stubborn", async (ctx) => {
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
    reasons.push(ctx.signal.reason);
  });
  await worker.start();
  const handle = await h.client(stopping).dispatch("stubborn", {}, { maxAttempts: 1 });
  await waitFor("the task to run", async () => (await handle.status()).status === "running");

  const began = Date.now();
  await h.stopReplica(stopping, { graceMs: 300 });
  assert.ok(Date.now() - began >= 290, "the grace period was given");
  const back = await h.pool.query("select status, attempts from taskq.tasks where id = $1", [handle.id]);
  assert.deepEqual(back.rows[0], { status: "pending", attempts: 0 }, "back in the queue, not STUCK, attempt given back");
  await waitFor("the handler to be told", () => reasons.length === 1);
  assert.ok(reasons[0] instanceof TaskAbortedError && reasons[0].reason === "shutdown", String(reasons[0]));
  await worker.stop({ graceMs: 1_000 });
});

test("SIGTERM: `npm start` drains before it exits, and a worker process finishes its handler before it closes", async () => {
  const port = await freePort();
  const server = startTs("packages/server/src/main.ts", {
    DATABASE_URL: h.databaseUrl,
    TASKQ_PORT: String(port),
    TASKQ_SHUTDOWN_GRACE_MS: "20000",
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await server.waitFor(/taskq listening on/);
    const worker = startTs("examples/worker.ts", { TASKQ_URL: url });
    await worker.waitFor(/\[worker\] connected/);
    const client = h.client(await h.replica());
    const report = await client.dispatch("report.generate", { sections: 6 });
    await waitFor("the report to start", async () => (await report.status()).log.length >= 2);

    server.proc.kill("SIGTERM");
    worker.proc.kill("SIGTERM");
    assert.deepEqual(await report.result(), { sections: 6, pages: 24 }, "the running handler finished");
    assert.equal((await report.status()).attempts, 1);
    assert.equal(await worker.exited, 0, worker.output());
    assert.match(worker.output(), /stopping: finishing running tasks/);
    assert.equal(await server.exited, 0, server.output());
  } finally {
    server.proc.kill("SIGKILL");
  }
});

test("health Watch says NOT_SERVING as soon as the drain begins, even a drain that ends at once", async () => {
  const stopping = await h.replica();
  const conn = connect({ url: stopping.server.url });
  try {
    const seen: HealthCheckResponse_ServingStatus[] = [];
    const watched = (async () => {
      for await (const r of createClient(Health, conn.transport).watch({})) seen.push(r.status);
    })().catch(() => {}); // the stream ends with the server
    await waitFor("the first status", () => seen.length === 1);
    assert.deepEqual(seen, [HealthCheckResponse_ServingStatus.SERVING]);
    await h.stopReplica(stopping); // nothing runs: the drain is over within milliseconds
    await watched;
    assert.deepEqual(seen, [HealthCheckResponse_ServingStatus.SERVING, HealthCheckResponse_ServingStatus.NOT_SERVING]);
  } finally {
    conn.close();
  }
});
