/**
 * Clock skew between replicas. Two replicas share one database: one whose machine's clock is five
 * minutes fast, one five minutes slow. Task times come from the database's clock (a DatabaseClock
 * measured against each machine's own), so the replicas agree on every task: a task dispatched through
 * one is leased at once through the other, a delay or a retry delay is honoured whoever claims the task,
 * and one replica's reaper does not time out a lease the other granted.
 *
 * With each replica's own clock instead (a clock that is simply five minutes off), every test here fails.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { pino } from "pino";
import { startReplica, type Replica } from "../packages/server/src/app.js";
import { loadConfig, withBuiltinQueues } from "../packages/server/src/config.js";
import { DatabaseClock } from "../packages/server/src/engine/clock.js";
import { clockTimestampRead } from "../packages/server/src/engine/sql/db.js";
import { Harness, silentLog, waitFor } from "./helpers.js";

const SKEW_MS = 5 * 60_000;
const DELAY_MS = 1_500;
/** Far more than the clocks' disagreement after a measurement (half a loopback round trip), far less than the delays. */
const TOLERANCE_MS = 250;

/** A replica on a machine whose clock is `skewMs` off. */
async function skewedReplica(h: Harness, skewMs: number): Promise<Replica> {
  const config = { ...loadConfig({}), host: "127.0.0.1", port: 0, pollIntervalMs: 200, builtinSchedules: false, queues: withBuiltinQueues({}) };
  const replica = await startReplica({ ...config, databaseUrl: h.databaseUrl }, silentLog, { localTime: () => Date.now() + skewMs });
  h.replicas.push(replica); // stopped by h.close()
  return replica;
}

describe("replicas whose clocks are five minutes apart each way", () => {
  let h: Harness;
  let fast: Replica;
  let slow: Replica;
  before(async () => {
    h = await Harness.create();
    fast = await skewedReplica(h, SKEW_MS);
    slow = await skewedReplica(h, -SKEW_MS);
  });
  after(() => h.close());

  test("a task dispatched through the fast replica is leased at once through the slow one", async () => {
    const worker = h.worker({}, slow);
    worker.register("skew.now", () => "ran");
    await worker.start();
    const task = await h.client(fast).dispatch("skew.now");
    const done = await waitFor("the task to run (it is due now, not in five minutes)", async () => (await task.status()).status === "completed", 10_000);
    assert.ok(done);
  });

  for (const [through, runOn] of [["slow", "fast"], ["fast", "slow"]] as const) {
    test(`a delayed task dispatched through the ${through} replica runs on the ${runOn} one after its delay, neither early nor late`, async () => {
      const replicas = { fast, slow };
      const type = `skew.delayed.${through}`;
      let startedAt = 0;
      const worker = h.worker({}, replicas[runOn]);
      worker.register(type, () => {
        startedAt = Date.now();
      });
      await worker.start();
      const dispatchedAt = Date.now();
      const task = await h.client(replicas[through]).dispatch(type, {}, { delayMs: DELAY_MS });
      await waitFor("the delayed task to run", async () => (await task.status()).status === "completed", 10_000);
      assert.ok(startedAt - dispatchedAt >= DELAY_MS - TOLERANCE_MS, `ran ${startedAt - dispatchedAt} ms after dispatch; the delay was ${DELAY_MS} ms`);
    });
  }

  test("a lease granted through the slow replica is not timed out by the fast one's reaper", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const worker = h.worker({}, slow);
    worker.register("skew.leased", () => gate.then(() => "done"));
    await worker.start();
    try {
      const task = await h.client(slow).dispatch("skew.leased", {}, { timeoutMs: 60_000 });
      await waitFor("the task to run", async () => (await task.status()).status === "running");
      const swept = await fast.engine.sweep();
      assert.deepEqual(swept.expired.map((t) => t.id), [], "nothing timed out");
      const running = await task.status();
      assert.equal(running.status, "running");
      const aMinuteFromNow = Date.now() + 60_000;
      assert.ok(Math.abs(running.deadline!.getTime() - aMinuteFromNow) < 30_000, `deadline ${running.deadline!.toISOString()}, a minute from now is ${new Date(aMinuteFromNow).toISOString()}`);
      release();
      assert.equal(await task.result(), "done");
      assert.equal((await task.status()).attempts, 1);
    } finally {
      release();
    }
  });

  test("a retry delay set through the slow replica is honoured by the fast one", async () => {
    const task = await h.client(slow).dispatch("skew.retry", {}, { retryDelayMs: DELAY_MS, maxAttempts: 2 });
    // The first attempt fails on a worker of the slow replica: the retry time is written by its clock.
    const raw = h.rawWorker(slow);
    raw.hello(["skew.retry"], 1);
    const lease = await raw.next("lease");
    const failedAt = Date.now();
    raw.send({ case: "finish", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, outcome: { case: "retry", value: { error: "try again" } } } });
    await raw.next("finishAck");
    await raw.close();

    // The second attempt is claimed by the fast replica.
    let startedAt = 0;
    const worker = h.worker({}, fast);
    worker.register("skew.retry", () => {
      startedAt = Date.now();
    });
    await worker.start();
    await waitFor("the second attempt", async () => (await task.status()).status === "completed", 10_000);
    assert.equal((await task.status()).attempts, 2);
    assert.ok(startedAt - failedAt >= DELAY_MS - TOLERANCE_MS, `retried ${startedAt - failedAt} ms after the failure; the retry delay was ${DELAY_MS} ms`);
  });
});

describe("DatabaseClock", () => {
  let h: Harness;
  before(async () => (h = await Harness.create()));
  after(() => h.close());

  /** The database's time now, and how long asking took. */
  const databaseNow = async (db: pg.Pool) => {
    const sent = Date.now();
    const ms = await clockTimestampRead(db);
    return { ms, roundTripMs: Date.now() - sent };
  };

  test("reads the database's time whatever the local clock says", async () => {
    for (const skewMs of [SKEW_MS, -SKEW_MS, undefined]) {
      // undefined: the default local time, this process's monotonic clock.
      const local = skewMs === undefined ? undefined : () => Date.now() + skewMs;
      const clock = new DatabaseClock(h.pool, { log: silentLog, local });
      const measured = await clock.sync();
      const expectedMs = -(skewMs ?? 0);
      assert.ok(Math.abs(measured.offsetMs - expectedMs) <= measured.roundTripMs + 5, `offset ${measured.offsetMs} for a skew of ${skewMs}`);
      const db = await databaseNow(h.pool);
      const ours = clock.now().getTime();
      assert.ok(Math.abs(ours - db.ms) <= db.roundTripMs + measured.roundTripMs + 5, `${ours - db.ms} ms from the database's clock`);
    }
  });

  test("measures again on its own, and keeps the last offset when the database does not answer", async () => {
    let skewMs = SKEW_MS;
    const lines: string[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => void lines.push(line) });
    const pool = new pg.Pool({ connectionString: h.databaseUrl, max: 1 });
    const clock = new DatabaseClock(pool, { log, local: () => Date.now() + skewMs, resyncMs: 20 });
    await clock.sync();
    clock.start();
    try {
      // This machine's clock is stepped back an hour: the next measurement makes up for it.
      skewMs -= 3_600_000;
      await waitFor("a new measurement", () => Math.abs(clock.now().getTime() - Date.now()) < 1_000, 5_000);
      assert.ok(lines.some((l) => /clock moved/.test(l)), "the step is logged");

      await pool.end();
      await waitFor("a failed measurement to be logged", () => lines.some((l) => /keeping the last offset/.test(l)), 5_000);
      assert.ok(Math.abs(clock.now().getTime() - Date.now()) < 1_000, "the last offset still holds");
    } finally {
      clock.stop();
    }
  });
});
