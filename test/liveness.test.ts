/**
 * Leases that end when they must, under the faults beyond a clean kill: a worker that stops reading, a
 * half-open connection either way, a replica whose database link stalls with a claim in flight, and a
 * worker lost while its replica's database was away. Links are cut with a TCP proxy of the test's own
 * (scripts/tcp-proxy.ts) that holds bytes without closing anything.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { startReplica, type Replica } from "../packages/server/src/app.js";
import { loadConfig } from "../packages/server/src/config.js";
import { WorkerMessageSchema } from "@taskq/protocol";
import { TcpProxy } from "../scripts/tcp-proxy.js";
import { Harness, silentLog, waitFor } from "./helpers.js";
import { startTs } from "./processes.js";

const STALE_CHECK_MS = 2_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function statuses(h: Harness, type: string): Promise<Record<string, number>> {
  const { rows } = await h.pool.query<{ status: string; n: number }>(
    `select status, count(*)::int4 as n from (select status from taskq.tasks where type = $1
       union all select status from taskq.history where type = $1) t group by status`,
    [type],
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/**
 * A replica whose database connections (pool and LISTEN) all go through `proxy`. No queue has a worker
 * limit, so each of its claims is one statement (no limit locks in a transaction): with the replies
 * held, the database still makes the claim.
 */
async function replicaThrough(h: Harness, proxy: TcpProxy, pollIntervalMs = 200): Promise<Replica> {
  const url = new URL(h.databaseUrl);
  url.host = `127.0.0.1:${proxy.port}`;
  const config = { ...loadConfig({}), host: "127.0.0.1", port: 0, pollIntervalMs, builtinSchedules: false, staleCheckMs: STALE_CHECK_MS };
  const replica = await startReplica({ ...config, queues: { default: {}, scheduled: {} }, databaseUrl: url.toString() }, silentLog);
  h.replicas.push(replica);
  return replica;
}

/** Runs `type` once per attempt: the first attempt waits for its signal, later ones return "again". */
function abortableHandler(runs: { attempt: number; reason?: string }[]) {
  return async (ctx: { attempt: number; signal: AbortSignal }) => {
    const run: (typeof runs)[number] = { attempt: ctx.attempt };
    runs.push(run);
    if (ctx.attempt > 1) return "again";
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
    run.reason = (ctx.signal.reason as Error).message;
    throw ctx.signal.reason;
  };
}

describe("a worker that reads nothing", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    await h.replica({ staleCheckMs: STALE_CHECK_MS });
  });
  after(() => h.close());

  for (const fate of ["killed", "left blocked"] as const) {
    test(`leases sitting unread when the worker is ${fate} go back to the queue, and to a healthy worker`, async () => {
      const type = `unread.${fate.replace(" ", "-")}`;
      const client = h.client();
      // 60 leases of 8 KiB: more than HTTP/2 flow control lets through to a reader that stopped.
      await client.dispatchBatch(Array.from({ length: 60 }, () => ({ type, params: { pad: "x".repeat(8_000) } })));
      const child = startTs("test/stalled-worker.ts", { TASKQ_URL: h.replicas[0].server.url, TYPE: type, CREDITS: "60" });
      try {
        await child.waitFor(/blocking/);
        await waitFor("all 60 leased to the stalled worker", async () => (await statuses(h, type)).running === 60);
        if (fate === "killed") child.proc.kill("SIGKILL");
        const healthy = h.worker({ concurrency: 10 });
        healthy.register(type, () => "done");
        await healthy.start();
        await waitFor("every task to complete on the healthy worker", async () => (await statuses(h, type)).completed === 60, 15_000);
        await healthy.stop();
      } finally {
        child.proc.kill("SIGKILL");
        await child.exited;
      }
    });
  }

  test("a worker that heartbeats but reads nothing is cut off", async () => {
    const type = "unread.heartbeating";
    const client = h.client();
    await client.dispatchBatch(Array.from({ length: 60 }, () => ({ type, params: { pad: "x".repeat(8_000) } })));
    const session = http2.connect(h.replicas[0].server.url);
    const stream = session.request({ ":method": "POST", ":path": "/taskq.v1.WorkerService/Connect", "content-type": "application/grpc", te: "trailers" });
    const send = (m: MessageInitShape<typeof WorkerMessageSchema>["message"]) => {
      const body = toBinary(WorkerMessageSchema, create(WorkerMessageSchema, { message: m }));
      const out = Buffer.alloc(5 + body.length);
      out.writeUInt32BE(body.length, 1);
      out.set(body, 5);
      stream.write(out);
    };
    stream.pause(); // read nothing
    send({ case: "hello", value: { workerName: "deaf", taskTypes: [{ name: type }], acceptsBatches: true } });
    send({ case: "credits", value: { count: 60 } });
    const beat = setInterval(() => send({ case: "heartbeat", value: {} }), STALE_CHECK_MS / 10);
    try {
      await waitFor("all 60 leased to the deaf worker", async () => (await statuses(h, type)).running === 60);
      // The response ends (its trailers say why) once the worker reads again.
      const ended = new Promise((resolve) => {
        stream.once("end", resolve);
        stream.once("close", resolve);
      });
      stream.on("data", () => {});
      await waitFor("its leases to return", async () => (await statuses(h, type)).pending === 60, 10_000);
      stream.resume();
      await ended;
    } finally {
      clearInterval(beat);
      session.destroy();
    }
  });
});

describe("a half-open connection between a worker and its replica", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    await h.replica({ staleCheckMs: STALE_CHECK_MS });
  });
  after(() => h.close());

  for (const direction of ["down", "both"] as const) {
    const what = direction === "down" ? "replica → worker held" : "nothing delivered either way";
    test(`${what}: the worker aborts its handler within the lease validity, the task runs again`, async () => {
      const type = `halfopen.${direction}`;
      const url = new URL(h.replicas[0].server.url);
      const proxy = await TcpProxy.start({ port: Number(url.port) });
      try {
        const runs: { attempt: number; reason?: string }[] = [];
        const worker = h.worker({ url: `http://127.0.0.1:${proxy.port}` });
        worker.register(type, abortableHandler(runs));
        await worker.start();
        const handle = await h.client().dispatch(type, {}, { timeoutMs: 60_000 });
        await waitFor("the first attempt", () => runs.length === 1);
        proxy.hold(direction);
        // The handler stops long before the task's 60 s timeout: at the lease validity (800 ms after the
        // last ack), with the link still cut.
        await waitFor("the handler to be aborted", () => runs[0].reason !== undefined, 10_000);
        assert.match(runs[0].reason!, /lease was lost/);
        await waitFor("the lease to be given back", async () => (await handle.status()).status !== "running" || (await handle.status()).attempts > 1, 10_000);
        proxy.release();
        assert.equal(await handle.result(), "again");
        assert.deepEqual(runs.map((r) => r.attempt), [1, 2]);
        await worker.stop();
      } finally {
        await proxy.close();
      }
    });
  }
});

describe("a stream that broke on the replica's side only", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    await h.replica({ staleCheckMs: STALE_CHECK_MS });
  });
  after(() => h.close());

  test("its leases go back only once the worker's deadline passed: the next attempt starts after the first was aborted", async () => {
    const type = "onesided.reset";
    const url = new URL(h.replicas[0].server.url);
    const proxy = await TcpProxy.start({ port: Number(url.port) });
    try {
      const events: string[] = [];
      const cut = h.worker({ url: `http://127.0.0.1:${proxy.port}` });
      cut.register(type, async (ctx) => {
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
        events.push("first aborted");
        throw ctx.signal.reason;
      });
      await cut.start();
      const handle = await h.client().dispatch(type, {}, { timeoutMs: 60_000 });
      await waitFor("the first attempt", async () => (await handle.status()).status === "running");
      const healthy = h.worker({});
      healthy.register(type, () => {
        events.push("second started");
        return "second";
      });
      await healthy.start();
      // The replica sees its stream reset; the worker sees nothing and runs on until its deadline.
      proxy.resetTargetSide();
      assert.equal(await handle.result(), "second");
      assert.deepEqual(events, ["first aborted", "second started"]);
      await healthy.stop();
      await cut.stop({ graceMs: 100 });
    } finally {
      await proxy.close();
    }
  });
});

describe("a replica whose database link stalls", () => {
  let h: Harness;
  let proxy: TcpProxy;
  before(async () => {
    h = await Harness.create();
    await h.replica({ staleCheckMs: STALE_CHECK_MS }); // the healthy replica, and migrations
    const url = new URL(h.databaseUrl);
    proxy = await TcpProxy.start({ port: Number(url.port) });
  });
  after(async () => {
    proxy.release();
    await h.close();
    await proxy.close();
  });

  test("a lease claimed just before the stall is never delivered once another replica recovered it", async () => {
    // No polling: this replica claims only when told (here, by the worker's credits).
    const stalled = await replicaThrough(h, proxy, 60_000);
    const type = "stall.claim";
    const late = h.rawWorker(stalled);
    late.hello([type], 0);
    await late.next("welcome");
    const beat = setInterval(() => late.send({ case: "heartbeat", value: {} }), 100); // a live worker
    try {
      const handle = await h.client(h.replicas[0]).dispatch(type);
      await sleep(300); // the stalled replica heard of it, and had nothing to claim it for
      // The claim's reply is held: the database leases the task to the late worker's session, and the
      // replica does not hear of it.
      proxy.hold("down");
      late.send({ case: "credits", value: { count: 1 } });
      await waitFor("the claim to be made", async () => (await handle.status()).status === "running", 10_000);
      proxy.hold("both"); // and now its heartbeats stop reaching the database too
      const healthy = h.worker({}, h.replicas[0]);
      healthy.register(type, () => "healthy");
      await healthy.start();
      assert.equal(await handle.result(), "healthy", "recovered by the healthy replica and run there");
      proxy.release();
      // The stalled replica now reads its claim's result, long after the session's leases lapsed.
      const got = await late.nextOf(["lease"], 5_000).then((m) => m.case, (err: Error) => err.message);
      assert.doesNotMatch(got, /^lease$/, "the dead lease never reached the worker");
      await healthy.stop();
    } finally {
      clearInterval(beat);
    }
  });

  test("a transaction its replica left idle (paused mid-claim) is rolled back, and its locks freed, after S/4", async () => {
    const replica = h.replicas[0];
    const handle = await h.client(replica).dispatch("stall.idle-in-transaction", {}, { delayMs: 60_000 });
    // As a claim under the limit locks does: begin, lock, (the replica stops here), never commit.
    const paused = await replica.pool.connect();
    paused.on("error", () => {});
    await paused.query("begin");
    await paused.query("select id from taskq.tasks where id = $1 for update", [handle.id]);
    const other = await h.pool.connect();
    try {
      await other.query("set lock_timeout = '50ms'");
      const locked = () => other.query("select id from taskq.tasks where id = $1 for update", [handle.id]).then(() => false, () => true);
      assert.ok(await locked(), "the row is locked while the transaction is open");
      await waitFor("Postgres to end the idle transaction", async () => !(await locked()), 10_000);
      await assert.rejects(paused.query("select 1"), "the idle connection was ended");
    } finally {
      other.release();
      paused.release(true);
    }
  });

  test("a worker lost while its replica's database was away has its leases back as soon as the database answers", async () => {
    const replica = await replicaThrough(h, proxy);
    const type = "stall.lost";
    const raw = h.rawWorker(replica);
    raw.hello([type], 3);
    const handles = await Promise.all([1, 2, 3].map(() => h.client(h.replicas[0]).dispatch(type, {}, { timeoutMs: 600_000 })));
    for (let i = 0; i < 3; i++) await raw.next("lease");
    proxy.refuse(); // the replica's database is down for it: connections reset, new ones refused
    await raw.close(); // and the worker goes meanwhile
    await sleep(500);
    proxy.accept();
    // Well before the 10-minute task timeout: the closing session's release is tried again, or, failing
    // that, its row is no longer heartbeated and a reaper recovers its leases.
    for (const handle of handles) {
      await waitFor("the lease to return", async () => (await handle.status()).status === "pending", 10_000);
    }
  });
});
