/**
 * Database outage: with the database stopped, calls answer UNAVAILABLE within seconds and health says
 * NOT_SERVING; nothing crashes; when the database returns, the server and its workers carry on by
 * themselves. Through an outage shorter than the lease validity a worker's stream stays open, a finish
 * sent meanwhile is recorded once the database answers, and no live lease is recovered as orphaned.
 * Past the validity, the replica can no longer vouch for its leases (for all it knows, only its own link
 * is down and other replicas are recovering them): its workers abort their handlers and connect again,
 * and the tasks run again once the database is back.
 *
 * This test runs its own Postgres (the embedded one), since it stops and starts it.
 */
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import pg from "pg";
import { startReplica, type Replica } from "../packages/server/src/app.js";
import { loadConfig } from "../packages/server/src/config.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../packages/server/src/embedded.js";
import { Code, TaskClient, TaskqError, Worker } from "@taskq/sdk";
import { connect } from "@taskq/sdk";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "@taskq/protocol/grpc";
import { freePort } from "./processes.js";
import { silentLog, waitFor } from "./helpers.js";

/** Lease validity 4/5 of S/2 = 8 s: the outages of the first two tests stay well inside it. */
const STALE_CHECK_MS = 20_000;
let dir: string;
let port: number;
let db: EmbeddedDatabase | null = null;
let replica: Replica;
let client: TaskClient;
let worker: Worker;
const closers: (() => unknown)[] = [];

const startDatabase = async () => (db = await startEmbeddedPostgres({ dataDir: path.join(dir, "data"), port }));

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "taskq-outage-"));
  await chmod(dir, 0o755); // as root, the embedded Postgres runs as an unprivileged user that must reach it
  port = await freePort();
  await startDatabase();
  const config = { ...loadConfig({}), host: "127.0.0.1", port: 0, pollIntervalMs: 200, builtinSchedules: false, staleCheckMs: STALE_CHECK_MS };
  replica = await startReplica({ ...config, databaseUrl: db!.url }, silentLog);
  client = new TaskClient({ url: replica.server.url });
  closers.push(() => client.close());
});
after(async () => {
  for (const close of closers.reverse()) await close();
  await replica?.stop();
  await db?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function health(): Promise<Serving> {
  const conn = connect({ url: replica.server.url });
  try {
    return (await createClient(Health, conn.transport).check({})).status;
  } finally {
    conn.close();
  }
}

test("after the notification connection comes back, live sessions get a stale period before the reaper judges them", async () => {
  const admin = new pg.Client({ connectionString: db!.url });
  admin.on("error", () => {}); // the next test's outage cuts this connection too; it is not used after this test
  await admin.connect();
  closers.push(() => admin.end());
  const reconnects = async () => Number(/^taskq_database_reconnects_total (\d+)$/m.exec(await (await fetch(`${replica.server.url}/metrics`)).text())?.[1]);
  const before = await reconnects();

  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const held = new Worker({ url: replica.server.url, reconnect: { initialMs: 50, maxMs: 500 } });
  held.register("outage.held", () => gate.then(() => "done"));
  closers.push(() => held.stop({ graceMs: 1_000 }));
  await held.start();
  const task = await client.dispatch("outage.held");
  await waitFor("the task to run", async () => (await client.status(task.id)).status === "running");

  // Drop the replica's LISTEN connection, as an outage would; it reconnects by itself.
  await admin.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'taskq-listen'");
  await waitFor("the notification connection to come back", async () => (await reconnects()) > before);

  // The task's lease now looks as an outage leaves it: no session heartbeated within the stale limit.
  // (Pointing it at a session that does not exist, so no heartbeat can refresh it meanwhile.)
  const { rows } = await admin.query("select session_id from taskq.tasks where id = $1", [task.id]);
  await admin.query("update taskq.tasks set session_id = gen_random_uuid() where id = $1", [task.id]);
  const swept = await replica.engine.sweep();
  assert.deepEqual(swept.recovered, [], "no lease recovered during the hold-off");
  assert.equal((await client.status(task.id)).status, "running");

  await admin.query("update taskq.tasks set session_id = $2 where id = $1", [task.id, rows[0].session_id]);
  release();
  assert.equal(await task.result(), "done");
  assert.equal((await client.status(task.id)).attempts, 1);
});

test("calls fail fast with UNAVAILABLE while the database is down, and everything carries on after", async () => {
  const events: string[] = [];
  worker = new Worker({ url: replica.server.url, concurrency: 2, reconnect: { initialMs: 50, maxMs: 500 }, onEvent: (e) => events.push(e) });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const started: string[] = [];
  worker
    .register("outage.slow", async (ctx) => {
      started.push(ctx.id);
      await gate;
      ctx.log("finished while the database was down");
      return { attempt: ctx.attempt };
    })
    .register("outage.quick", () => "ok");
  closers.push(() => worker.stop({ graceMs: 1_000 }));
  await worker.start();
  const slow = await client.dispatch("outage.slow");
  await waitFor("the slow task to start", () => started.length === 1);
  assert.equal(await health(), Serving.SERVING);

  await db!.stop();
  db = null;

  // Each call is refused with UNAVAILABLE, quickly.
  for (const call of [() => client.status(slow.id), () => client.dispatch("outage.quick"), () => client.listActive()]) {
    const t0 = performance.now();
    const err = await call().then(() => null, (e: unknown) => e);
    const tookMs = performance.now() - t0;
    assert.ok(err instanceof TaskqError, `expected a refusal, got ${String(err)}`);
    assert.equal(err.code, Code.Unavailable, err.message);
    assert.ok(tookMs < 3_500, `refused after ${Math.round(tookMs)} ms`);
  }
  assert.equal(await health(), Serving.NOT_SERVING);
  const scraped = await (await fetch(`${replica.server.url}/metrics`)).text();
  assert.match(scraped, /^taskq_database_up 0$/m);

  // The handler finishes during the outage.
  release();
  await new Promise((r) => setTimeout(r, 1_000));
  await startDatabase();

  await waitFor("health SERVING again", async () => (await health()) === Serving.SERVING, 15_000);
  const info = await waitFor("the slow task's outcome", async () => {
    const t = await client.status(slow.id).catch(() => null);
    return t && t.status !== "running" ? t : null;
  }, 15_000);
  assert.equal(info.status, "completed", `ended ${info.status}: ${info.error}`);
  assert.deepEqual(info.result, { attempt: 1 });
  assert.equal(info.attempts, 1, "the live lease was not recovered as orphaned");
  assert.deepEqual(info.log.map((l) => l.message), ["finished while the database was down"]);
  assert.equal(started.length, 1, "the task ran once");

  // New work flows again through the same worker.
  const quick = await client.dispatch("outage.quick");
  assert.equal(await quick.result(), "ok");
  assert.deepEqual(events.filter((e) => e === "connected" || e === "disconnected"), ["connected"], "the worker's stream stayed open");

  const check = new pg.Client({ connectionString: db!.url });
  await check.connect();
  const { rows } = await check.query("select count(*)::int4 as n from taskq.tasks where status in ('running', 'cancelling')");
  await check.end();
  assert.equal(rows[0].n, 0);
});

test("past the lease validity, the replica's workers abort their handlers at once, and the task runs again after the outage", async () => {
  const short = await startReplica(
    { ...loadConfig({}), host: "127.0.0.1", port: 0, pollIntervalMs: 200, builtinSchedules: false, staleCheckMs: 2_000, databaseUrl: db!.url },
    silentLog,
  );
  closers.push(() => short.stop());
  const runs: { attempt: number; abortedAt?: number; reason?: string }[] = [];
  const lapsing = new Worker({ url: short.server.url, reconnect: { initialMs: 50, maxMs: 300 } });
  lapsing.register("outage.lapse", async (ctx) => {
    const run: (typeof runs)[number] = { attempt: ctx.attempt };
    runs.push(run);
    if (ctx.attempt > 1) return "second attempt";
    await new Promise<void>((resolve) =>
      ctx.signal.addEventListener("abort", () => {
        run.abortedAt = performance.now();
        run.reason = (ctx.signal.reason as Error).message;
        resolve();
      }),
    );
    throw ctx.signal.reason;
  });
  closers.push(() => lapsing.stop({ graceMs: 1_000 }));
  await lapsing.start();
  const task = await client.dispatch("outage.lapse");
  await waitFor("the first attempt to run", () => runs.length === 1);

  await db!.stop();
  db = null;
  // The lease validity is 4/5 of S/2 = 800 ms after the last confirmed heartbeat: the handler is aborted
  // while the database is still down, long before the 30 s task timeout.
  await waitFor("the handler to be aborted", () => runs[0].abortedAt !== undefined, 10_000);
  assert.match(runs[0].reason!, /lease was lost/);
  await new Promise((r) => setTimeout(r, 500));
  await startDatabase();

  assert.equal(await task.result(), "second attempt");
  assert.deepEqual(runs.map((r) => r.attempt), [1, 2]);
});
