/**
 * Postgres CPU per task of the three statements every task costs, each measured alone: the insert
 * (taskInsertMany, batches of 500), the claim (taskLeaseAvailable, 300 slots of one session) and the
 * finish (taskFinishMany, successes in batches of 100). Each runs on a connection of its own, so each
 * backend's CPU time (/proc) is that statement's cost; no server, no gRPC, no other load.
 *
 *   npm run bench:statements
 *
 * BENCH_DATABASE_URL names a Postgres where it may create a database (default the one on
 * 127.0.0.1:5432); BENCH_TASKS sets how many tasks (30,000); BENCH_KEYS=N gives them N concurrency
 * keys in turn (default 0: no key), so the claim walks the keys and gives them turns. The database must be on this machine.
 * The connections run with JIT off, as taskq's do.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { migrate } from "../packages/server/src/engine/migrate.js";
import { taskInsertMany } from "../packages/server/src/engine/sql/dispatch.js";
import { taskLeaseAvailable } from "../packages/server/src/engine/sql/claim.js";
import { taskFinishMany } from "../packages/server/src/engine/sql/lease.js";
import { sessionUpsert } from "../packages/server/src/engine/sql/sessions.js";
import type { KeyCursors, NewTask } from "../packages/server/src/engine/types.js";
import { cpuMs } from "./lib.js";

const TASKS = Number(process.env.BENCH_TASKS ?? 30_000);
const KEYS = Number(process.env.BENCH_KEYS ?? 0);
const adminUrl = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const database = `taskq_statements_${process.pid}`;

const admin = new pg.Client(adminUrl);
await admin.connect();
await admin.query(`create database ${database}`);
const url = new URL(adminUrl);
url.pathname = `/${database}`;
try {
  const pool = new pg.Pool({ connectionString: url.href, options: "-c jit=off" });
  pool.on("error", () => {}); // an idle connection ended by the drop below
  await migrate(pool);
  const session = randomUUID();
  await sessionUpsert(pool, { id: session, replicaId: randomUUID(), workerName: "w", taskTypes: ["bench.noop"], queues: [], typeTimeouts: {}, concurrency: 300, connectedAt: new Date() });
  /** A connection of its own and its backend's process id. */
  const backend = async () => {
    const client = await pool.connect();
    const { rows } = await client.query<{ pid: number }>("select pg_backend_pid() as pid");
    return { client, cpu: () => cpuMs(rows[0].pid) };
  };
  const [inserter, claimer, finisher] = [await backend(), await backend(), await backend()];

  const task: NewTask = { type: "bench.noop", queue: "default", params: { i: 1 }, title: "", priority: 0, origin: "user", initiator: "", nodeId: "", timeoutMs: null, maxAttempts: 10, retryDelayMs: 30_000, retryBackoff: "fixed", runAt: null, idempotencyKey: null, concurrencyKey: null };
  const insertBefore = inserter.cpu();
  const keyed = (n: number): NewTask => (KEYS > 0 ? { ...task, concurrencyKey: `key-${n % KEYS}` } : task);
  for (let n = 0; n < TASKS; n += 500) {
    await taskInsertMany(inserter.client, Array.from({ length: Math.min(500, TASKS - n) }, (_, i) => keyed(n + i)), new Date());
  }
  const insert = inserter.cpu() - insertBefore;
  await pool.query("analyze taskq.tasks");

  const opts = {
    timeouts: { types: {}, queues: {}, defaultMs: 60_000 },
    limits: { queues: {}, perKey: {}, rates: {}, global: null },
    shares: { weights: {}, urgentPriority: {} },
    cursors: {} as KeyCursors,
    keyed: KEYS > 0,
  };
  const [claimBefore, finishBefore] = [claimer.cpu(), finisher.cpu()];
  for (let done = 0; done < TASKS; ) {
    const claimed = await taskLeaseAvailable(claimer.client, [{ types: ["bench.noop"], queues: null, slots: Array(300).fill(session) }], opts, new Date());
    const leased = claimed.leases;
    Object.assign(opts.cursors, claimed.cursors);
    if (leased.length === 0) throw new Error("the claim found nothing");
    for (let i = 0; i < leased.length; i += 100) {
      const finishes = leased.slice(i, i + 100).map((l) => ({ id: l.id, leaseToken: l.leaseToken, outcome: { kind: "success" as const, result: null } }));
      await taskFinishMany(finisher.client, finishes, new Date());
    }
    done += leased.length;
  }
  const [claim, finish] = [claimer.cpu() - claimBefore, finisher.cpu() - finishBefore];
  const perTask = (ms: number) => `${((ms * 1000) / TASKS).toFixed(1)} µs`;
  console.log(`Postgres CPU per task, ${TASKS} tasks${KEYS > 0 ? ` in ${KEYS} keys` : ""}: insert ${perTask(insert)}, claim ${perTask(claim)}, finish ${perTask(finish)}`);
  for (const b of [inserter, claimer, finisher]) b.client.release();
  await pool.end();
} finally {
  await admin.query(`drop database if exists ${database} with (force)`);
  await admin.end();
}
