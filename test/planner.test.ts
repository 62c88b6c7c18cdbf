/**
 * Plans that must not depend on fresh statistics: a burst of dispatches gets the task table analyzed,
 * and finishing or releasing leases looks each task up by primary key even when the statistics say
 * no task is running. Sweeps of running tasks never read the backlog.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import type pg from "pg";
import { taskInsertMany } from "../packages/server/src/engine/sql/dispatch.js";
import { taskLeaseAvailable } from "../packages/server/src/engine/sql/claim.js";
import { taskFinishMany, taskLeaseRelease } from "../packages/server/src/engine/sql/lease.js";
import { taskDeadlineExpire, taskLeaseFindOrphaned } from "../packages/server/src/engine/sql/recovery.js";
import { sessionList, sessionUpsert } from "../packages/server/src/engine/sql/sessions.js";
import type { Db } from "../packages/server/src/engine/sql/db.js";
import { MIN_INSERTS } from "../packages/server/src/engine/table-stats.js";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica();
});
after(() => h.close());

const reltuples = async () =>
  (await h.pool.query<{ n: number }>("select reltuples::float8 as n from pg_class where oid = 'taskq.tasks'::regclass")).rows[0].n;

test("a burst of dispatches gets the task table analyzed, without waiting for autovacuum", async () => {
  await h.pool.query("alter table taskq.tasks set (autovacuum_enabled = false)");
  await h.pool.query("analyze taskq.tasks");
  assert.ok((await reltuples()) <= 0);
  const client = h.client();
  for (let i = 0; i < MIN_INSERTS; i += 1_000) await client.dispatchBatch(Array.from({ length: 1_000 }, () => ({ type: "burst" })));
  await waitFor("the table to be analyzed", async () => (await reltuples()) >= MIN_INSERTS);
  // The analysis samples the claim's columns only, and that is enough for the claim's plan: it reads the
  // claim index in order and stops at the slots it fills.
  const session = randomUUID();
  await sessionUpsert(h.pool, { id: session, replicaId: randomUUID(), workerName: "w", taskTypes: ["burst"], queues: [], typeTimeouts: {}, concurrency: 1, connectedAt: new Date() });
  const opts = { timeouts: { types: {}, queues: {}, defaultMs: 60_000 }, limits: { queues: {}, perKey: {}, rates: {}, global: null }, shares: { weights: {}, urgentPriority: {} }, cursors: {}, keyed: true };
  for (const keyed of [false, true]) {
    const claim = (db: Db) => taskLeaseAvailable(db, [{ types: ["burst"], queues: null, slots: Array(10).fill(session) }], { ...opts, keyed }, new Date());
    const read = taskScans(await planOf(claim, { analyze: true }), rowsRead);
    assert.ok(read.length > 0);
    assert.ok(Math.max(...read) <= 10, `${keyed ? "walking keys" : "unkeyed only"}: rows of taskq.tasks read per scan: ${read.join(", ")}`);
  }
  await h.pool.query("alter table taskq.tasks reset (autovacuum_enabled)");
  await h.pool.query("delete from taskq.tasks");
});

/**
 * The plan Postgres chooses for the statement `run` sends (with `analyze`, also run, in a transaction
 * rolled back), as JSON text.
 */
async function planOf(run: (db: Db) => Promise<unknown>, opts: { analyze?: boolean } = {}): Promise<string> {
  let captured: pg.QueryConfig | null = null;
  const recorder = {
    query: async (q: pg.QueryConfig) => {
      captured = q;
      throw new Error("captured");
    },
  } as unknown as Db;
  await run(recorder).catch(() => {});
  assert.ok(captured, "the statement was captured");
  const { text, values } = captured as pg.QueryConfig;
  const c = await h.pool.connect();
  try {
    await c.query("begin");
    const { rows } = await c.query(`explain (${opts.analyze ? "analyze, " : ""}format json) ${text}`, values);
    return JSON.stringify(rows[0]["QUERY PLAN"]);
  } finally {
    await c.query("rollback");
    c.release();
  }
}

/** Every scan of taskq.tasks in a JSON plan, as `pick` describes it. */
function taskScans<T>(plan: string, pick: (node: Record<string, unknown>) => T): T[] {
  const scans: T[] = [];
  const walk = (node: Record<string, unknown>) => {
    if (node["Relation Name"] === "tasks" && node["Node Type"] !== "ModifyTable") scans.push(pick(node));
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
  };
  for (const root of JSON.parse(plan) as { Plan: Record<string, unknown> }[]) walk(root.Plan);
  return scans;
}

/** Rows of taskq.tasks a scan read: those it returned and those it passed over. */
const rowsRead = (node: Record<string, unknown>) => Number(node["Actual Rows"]) + Number(node["Rows Removed by Filter"] ?? 0);

/** The index a scan uses, or its node type when none. */
const indexOf = (node: Record<string, unknown>) => String(node["Index Name"] ?? node["Node Type"]);

test("finishing and releasing leases look each task up by primary key while the statistics say none is running", async () => {
  const session = randomUUID();
  await sessionUpsert(h.pool, { id: session, replicaId: randomUUID(), workerName: "w", taskTypes: ["stale"], queues: [], typeTimeouts: {}, concurrency: 1, connectedAt: new Date() });
  const task = { type: "stale", queue: "default", params: {}, title: "", priority: 0, origin: "user", initiator: "", nodeId: "", timeoutMs: null, maxAttempts: 3, retryDelayMs: 1000, retryBackoff: "fixed", runAt: null, idempotencyKey: null, concurrencyKey: null } as const;
  await taskInsertMany(h.pool, Array.from({ length: 3_000 }, () => ({ ...task })), new Date());
  await h.pool.query("alter table taskq.tasks set (autovacuum_enabled = false)");
  await h.pool.query("analyze taskq.tasks"); // every task pending, as far as the planner will know
  const opts = { timeouts: { types: {}, queues: {}, defaultMs: 60_000 }, limits: { queues: {}, perKey: {}, rates: {}, global: null }, shares: { weights: {}, urgentPriority: {} }, cursors: {}, keyed: true };
  const { leases: leased } = await taskLeaseAvailable(h.pool, [{ types: ["stale"], queues: null, slots: Array(3_000).fill(session) }], opts, new Date());
  assert.equal(leased.length, 3_000);
  const some = leased.slice(0, 500).map((l) => ({ id: l.id, leaseToken: l.leaseToken }));

  const finish = await planOf((db) => taskFinishMany(db, some.map((l) => ({ ...l, outcome: { kind: "success", result: null } })), new Date()));
  const release = await planOf((db) => taskLeaseRelease(db, some, { how: "lost", error: "gone" }, new Date()));
  for (const [what, plan] of [["finish", finish], ["release", release]] as const) {
    const scans = taskScans(plan, indexOf);
    assert.ok(scans.length > 0, `${what}: scans taskq.tasks`);
    assert.deepEqual([...new Set(scans)], ["tasks_pkey"], `${what}: ${scans.join(", ")}`);
  }
  await h.pool.query("alter table taskq.tasks reset (autovacuum_enabled)");
});

test("a claim never walks another type's backlog, however urgent", async () => {
  await h.pool.query("delete from taskq.tasks");
  const session = randomUUID();
  await sessionUpsert(h.pool, { id: session, replicaId: randomUUID(), workerName: "w", taskTypes: ["mine"], queues: [], typeTimeouts: {}, concurrency: 1, connectedAt: new Date() });
  const task = { type: "theirs", queue: "default", params: {}, title: "", priority: 9, origin: "user", initiator: "", nodeId: "", timeoutMs: null, maxAttempts: 3, retryDelayMs: 1000, retryBackoff: "fixed", runAt: null, idempotencyKey: null, concurrencyKey: null } as const;
  for (let i = 0; i < 4; i++) await taskInsertMany(h.pool, Array.from({ length: 5_000 }, () => ({ ...task })), new Date());
  await taskInsertMany(h.pool, Array.from({ length: 5 }, () => ({ ...task, type: "mine", priority: 0 })), new Date());
  await h.pool.query("analyze taskq.tasks");
  const opts = { timeouts: { types: {}, queues: {}, defaultMs: 60_000 }, limits: { queues: {}, perKey: {}, rates: {}, global: null }, shares: { weights: {}, urgentPriority: {} }, cursors: {}, keyed: true };
  for (const keyed of [false, true]) {
    const claim = (db: Db) => taskLeaseAvailable(db, [{ types: ["mine"], queues: null, slots: Array(10).fill(session) }], { ...opts, keyed }, new Date());
    const read = taskScans(await planOf(claim, { analyze: true }), rowsRead);
    assert.ok(read.length > 0);
    assert.ok(Math.max(...read) <= 10, `${keyed ? "walking keys" : "unkeyed only"}: rows of taskq.tasks read per scan: ${read.join(", ")}`);
  }
  assert.equal((await taskLeaseAvailable(h.pool, [{ types: ["mine"], queues: null, slots: Array(10).fill(session) }], opts, new Date())).leases.length, 5);
});

test("the deadline sweep, the orphan sweep and the worker list read the running tasks only, whatever the backlog", async () => {
  // The previous test left 20,000 pending tasks and 5 running ones; some of them past their deadline.
  await h.pool.query("update taskq.tasks set deadline_at = now() - interval '1 s' where status = 'running' and id % 2 = 0");
  const running = Number((await h.pool.query("select count(*) from taskq.tasks where status <> 'pending'")).rows[0].count);
  assert.equal(running, 5);
  for (const [what, run] of [
    ["deadline sweep", (db: Db) => taskDeadlineExpire(db, new Date())],
    ["orphan sweep", (db: Db) => taskLeaseFindOrphaned(db, 30_000)],
    ["worker list", (db: Db) => sessionList(db, 30_000)],
  ] as const) {
    const read = taskScans(await planOf(run, { analyze: true }), rowsRead);
    assert.ok(read.length > 0, `${what}: scans taskq.tasks`);
    assert.ok(Math.max(...read) <= running, `${what}: rows of taskq.tasks read per scan: ${read.join(", ")}`);
  }
});

test("a claim reads a key's backlog only as far as its turn, and none of a key at its limit", async () => {
  const session = randomUUID();
  await sessionUpsert(h.pool, { id: session, replicaId: randomUUID(), workerName: "w", taskTypes: ["fair"], queues: [], typeTimeouts: {}, concurrency: 1, connectedAt: new Date() });
  const task = { type: "fair", queue: "default", params: {}, title: "", priority: 0, origin: "user", initiator: "", nodeId: "", timeoutMs: null, maxAttempts: 3, retryDelayMs: 1000, retryBackoff: "fixed", runAt: null, idempotencyKey: null, concurrencyKey: "hot" } as const;
  await taskInsertMany(h.pool, Array.from({ length: 20_000 }, () => ({ ...task })), new Date());
  const small = Array.from({ length: 9 }, (_, i) => `small-${i}`);
  await taskInsertMany(h.pool, small.map((key) => ({ ...task, concurrencyKey: key })), new Date());
  await h.pool.query("analyze taskq.tasks");
  const opts = (perKey: Record<string, number>) => ({
    timeouts: { types: {}, queues: {}, defaultMs: 60_000 },
    limits: { queues: {}, perKey, rates: {}, global: null },
    shares: { weights: {}, urgentPriority: {} },
    cursors: {},
    keyed: true,
  });
  const claim = (perKey: Record<string, number>) => (db: Db) =>
    taskLeaseAvailable(db, [{ types: ["fair"], queues: null, slots: Array(10).fill(session) }], opts(perKey), new Date());
  const planFair = await planOf(claim({}), { analyze: true });
  if (process.env.SHOW_PLAN) (await import("node:fs")).writeFileSync(process.env.SHOW_PLAN, planFair);
  const readFair = taskScans(planFair, rowsRead);
  assert.ok(Math.max(...readFair) <= 20, `rows of taskq.tasks read per scan: ${readFair.join(", ")}`);
  const { leases } = await claim({})(h.pool);
  assert.deepEqual(leases.map((l) => l.concurrencyKey).sort(), ["hot", ...small].sort(), "one turn each");

  // The hot key now runs one task, its limit: the claim reads none of its backlog.
  const readLimited = taskScans(await planOf(claim({ default: 1 }), { analyze: true }), rowsRead);
  assert.ok(Math.max(...readLimited) <= 20, `rows of taskq.tasks read per scan: ${readLimited.join(", ")}`);
  assert.equal((await claim({ default: 1 })(h.pool)).leases.length, 0);
  await h.pool.query("delete from taskq.tasks where type = 'fair'");
});
