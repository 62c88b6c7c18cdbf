/**
 * Lost workers and lost replicas: a closed stream returns its leases at once; a silent worker is cut
 * off; a replica killed without a goodbye has its tasks recovered by another replica's reaper within
 * the stale-check interval; and recovery never overwrites a task that finished meanwhile.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { DEFAULT_TIMEOUT_MS } from "../packages/server/src/engine/index.js";
import { LOST_WORKER_ERROR } from "../packages/server/src/engine/reaper.js";
import { taskLeaseAvailable } from "../packages/server/src/engine/sql/claim.js";
import { taskFinishMany, taskLeaseRelease } from "../packages/server/src/engine/sql/lease.js";
import { taskLeaseFindOrphaned } from "../packages/server/src/engine/sql/recovery.js";
import { sessionUpsert } from "../packages/server/src/engine/sql/sessions.js";
import { Harness, waitFor } from "./helpers.js";
import { freePort, startTs } from "./processes.js";

const taskRow = async (h: Harness, id: string) => (await h.pool.query("select * from taskq.tasks where id = $1", [id])).rows[0];

describe("lost workers", () => {
  let h: Harness;
  const STALE_CHECK_MS = 1_200;
  before(async () => {
    h = await Harness.create();
    await h.replica({ staleCheckMs: STALE_CHECK_MS });
  });
  after(() => h.close());

  test("a closed stream returns its leases at once: PENDING while attempts remain, else STUCK", async () => {
    const client = h.client();
    const retryable = await client.dispatch("dropped", {}, { maxAttempts: 3 });
    const last = await client.dispatch("dropped", {}, { maxAttempts: 1 });
    const raw = h.rawWorker();
    raw.hello(["dropped"], 2);
    await raw.next("lease");
    await raw.next("lease");
    await raw.close();
    await waitFor("both leases to end", async () => (await retryable.status()).status === "pending" && (await last.status()).status === "stuck");
    const back = await retryable.status();
    assert.equal(back.attempts, 1);
    assert.equal(back.error, "worker disconnected");
    assert.ok(back.nextTryAt && back.nextTryAt.getTime() <= Date.now(), "eligible again at once");
    assert.equal((await last.status()).error, "worker disconnected");
  });

  test("a worker that goes silent has its stream closed and its lease returned", async () => {
    const client = h.client();
    const handle = await client.dispatch("hushed");
    const raw = h.rawWorker(); // sends no heartbeats
    raw.hello(["hushed"], 1);
    await raw.next("lease");
    const ended = await raw.result();
    assert.match(String(ended), /no message from the worker/);
    await waitFor("the lease to return", async () => (await handle.status()).status === "pending", 5_000);
  });

  test("a session whose row was reaped while it lived ends: its handlers abort, and its worker connects again", async () => {
    const sessionIds: string[] = [];
    const worker = h.worker({ onEvent: (e, d) => e === "connected" && sessionIds.push(String(d?.sessionId)) });
    const aborted: string[] = [];
    worker.register("reaped", async (ctx) => {
      if (ctx.attempt > 1) return "again";
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      aborted.push((ctx.signal.reason as Error).message);
      throw ctx.signal.reason;
    });
    await worker.start();
    const handle = await h.client().dispatch("reaped");
    await waitFor("the task to run", async () => (await handle.status()).status === "running");
    // As another replica's reaper would after this replica stalled: the row goes, the lease is recovered.
    const { rows } = await h.pool.query("select session_id::text, lease_token::text from taskq.tasks where id = $1", [handle.id]);
    await h.pool.query("delete from taskq.worker_sessions where id = $1", [rows[0].session_id]);
    await taskLeaseRelease(h.pool, [{ id: handle.id, leaseToken: rows[0].lease_token }], { how: "lost", error: LOST_WORKER_ERROR }, new Date());
    assert.equal(await handle.result(), "again");
    assert.deepEqual(aborted, ["the lease was lost: the connection to the server ended"]);
    await waitFor("a new session", () => sessionIds.length === 2);
    assert.notEqual(sessionIds[0], sessionIds[1]);
    const { rows: left } = await h.pool.query("select 1 from taskq.worker_sessions where id = $1", [sessionIds[0]]);
    assert.equal(left.length, 0, "the old session's row is not written again");
    await worker.stop();
  });
});

describe("recovery against finishes, in SQL", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    await h.replica();
  });
  after(() => h.close());

  test("recovery racing finishes, 5 rounds of 40 tasks: each task is finished or recovered, never both", async (t) => {
    const engine = h.replicas[0].engine;
    const tally = { finished: 0, recovered: 0 };
    for (let round = 0; round < 5; round++) {
      const sessionId = crypto.randomUUID();
      await sessionUpsert(h.pool, {
        id: sessionId,
        replicaId: crypto.randomUUID(),
        workerName: "doomed",
        taskTypes: [`race${round}`],
        queues: [],
        typeTimeouts: {},
        concurrency: 1,
        connectedAt: new Date(),
      });
      const ids = (await engine.dispatch(Array.from({ length: 40 }, () => ({ type: `race${round}`, maxAttempts: 3 })))).map((r) => r.id);
      const { leases } = await taskLeaseAvailable(
        h.pool,
        [{ types: [`race${round}`], queues: null, slots: ids.map(() => sessionId) }],
        { timeouts: { types: {}, queues: {}, defaultMs: DEFAULT_TIMEOUT_MS }, limits: { queues: {}, perKey: {}, rates: {}, global: null }, shares: { weights: {}, urgentPriority: {} }, cursors: {}, keyed: true },
        new Date(),
      );
      assert.equal(leases.length, 40);
      // The session's replica "dies": its heartbeat is an hour old.
      await h.pool.query("update taskq.worker_sessions set heartbeat_at = now() - interval '1 hour' where id = $1", [sessionId]);

      // Three reapers found all forty orphans; their releases start after a different share of the
      // finishes each round, so each side wins some, and every release acts on what it read earlier.
      const orphans = await taskLeaseFindOrphaned(h.pool, 1_000);
      assert.equal(orphans.length, 40);
      const finish = (i: number) =>
        taskFinishMany(h.pool, [{ id: leases[i].id, leaseToken: leases[i].leaseToken, outcome: { kind: "success", result: i } }], new Date());
      const split = round * 10;
      const finishes = leases.slice(0, split).map((_, i) => finish(i));
      const recoveries = [0, 1, 2].map(() => taskLeaseRelease(h.pool, orphans, { how: "lost", error: LOST_WORKER_ERROR }, new Date()));
      finishes.push(...leases.slice(split).map((_, i) => finish(split + i)));
      const finished = (await Promise.all(finishes)).map((m, i) => m.get(leases[i].id));
      const releasedBy = (await Promise.all(recoveries)).map((m) => [...m.keys()]);
      assert.equal(new Set(releasedBy.flat()).size, releasedBy.flat().length, "no lease released twice");
      const recovered = new Set(releasedBy.flat());

      for (const [i, lease] of leases.entries()) {
        const row = await taskRow(h, lease.id);
        tally[finished[i] === "completed" ? "finished" : "recovered"] += 1;
        if (finished[i] === "completed") {
          assert.ok(!recovered.has(lease.id), `task ${lease.id} finished and recovered`);
          assert.equal(row, undefined);
          const hist = (await h.pool.query("select status, result from taskq.history where id = $1", [lease.id])).rows[0];
          assert.deepEqual(hist, { status: "completed", result: i });
        } else {
          assert.equal(finished[i], undefined, "a finish is either recorded or refused");
          assert.ok(recovered.has(lease.id), `task ${lease.id} neither finished nor recovered`);
          assert.equal(row.status, "pending");
          assert.equal(row.attempts, 1);
          assert.equal(row.lease_token, null);
        }
      }
    }
    t.diagnostic(`${tally.finished} finished first, ${tally.recovered} recovered first`);
  });
});

describe("a replica killed without a goodbye", () => {
  let h: Harness;
  const STALE_CHECK_MS = 2_000;
  before(async () => (h = await Harness.create()));
  after(() => h.close());

  test("kill -9 of a replica holding leases: another replica recovers its tasks within the stale-check interval", async (t) => {
    const survivor = await h.replica({ staleCheckMs: STALE_CHECK_MS });
    const port = await freePort();
    const doomed = startTs("packages/server/src/main.ts", {
      DATABASE_URL: h.databaseUrl,
      TASKQ_PORT: String(port),
      TASKQ_STALE_CHECK_MS: String(STALE_CHECK_MS),
      TASKQ_LOG_LEVEL: "info",
    });
    try {
      await doomed.waitFor(/taskq listening on/, 30_000);
      const client = h.client(survivor);
      const handles = await client.dispatchBatch([1, 2, 3].map((n) => ({ type: "long", params: { n } })));

      const onDoomed = h.worker({ url: `http://127.0.0.1:${port}`, concurrency: 3 });
      onDoomed.register("long", (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true })));
      await onDoomed.start();
      await waitFor("the doomed replica to lease all three", async () =>
        (await Promise.all(handles.map((x) => x.status()))).every((s) => s.status === "running"),
      );

      const killedAt = performance.now();
      doomed.proc.kill("SIGKILL");
      await doomed.exited;
      await waitFor(
        "the survivor to recover the tasks",
        async () => (await Promise.all(handles.map((x) => x.status()))).every((s) => s.status === "pending"),
        STALE_CHECK_MS * 3,
      );
      const recoveryMs = performance.now() - killedAt;
      t.diagnostic(`recovered ${handles.length} tasks ${Math.round(recoveryMs)} ms after kill -9 (stale-check interval ${STALE_CHECK_MS} ms)`);
      assert.ok(recoveryMs < STALE_CHECK_MS, `recovery took ${Math.round(recoveryMs)} ms`);
      for (const s of await Promise.all(handles.map((x) => x.status()))) {
        assert.equal(s.attempts, 1);
        assert.equal(s.error, LOST_WORKER_ERROR);
      }

      const rescuer = h.worker({}, survivor);
      rescuer.register("long", (ctx) => ({ n: ctx.params.n, attempt: ctx.attempt }));
      await rescuer.start();
      const results = await Promise.all(handles.map((x) => x.result()));
      assert.deepEqual(results, [1, 2, 3].map((n) => ({ n, attempt: 2 })));
      const { rows } = await h.pool.query("select count(*)::int4 as n from taskq.worker_sessions where replica_id <> $1", [survivor.engine.replicaId]);
      assert.equal(rows[0].n, 0, "the dead replica's session rows are gone");
    } finally {
      doomed.proc.kill("SIGKILL");
    }
  });
});
