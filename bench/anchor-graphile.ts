/**
 * graphile-worker in one process, in its documented best configuration (worker.graphile.org
 * "Performance": concurrency 24, pool 25, local queue of 500, completion batching on), on the database
 * BENCH_DATABASE_URL names. Prints one JSON line of results.
 *
 *   throughput N    add N no-op jobs in batches of 500 (addJobs) while the runner drains them
 *   latency N GAP   add N jobs one at a time, GAP ms apart; pickup and completion-visible times
 */
import pg from "pg";
import { makeWorkerUtils, run, type Task } from "graphile-worker";
import { percentile, sleep, wallMs } from "./lib.js";

const connectionString = process.env.BENCH_DATABASE_URL!;
const [mode, nRaw, gapRaw] = process.argv.slice(2);
const n = Number(nRaw);
const preset = {
  worker: { connectionString, concurrentJobs: 24, maxPoolSize: 25, localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
};

const utils = await makeWorkerUtils({ connectionString });
await utils.migrate();
let done = 0;
let allDone!: () => void;
const finished = new Promise<void>((r) => (allDone = r));
const started = new Map<string, number>();
const noop: Task = async (_payload, helpers) => {
  started.set(helpers.job.id, wallMs());
  if (++done === n) allDone();
};
const runner = await run({ preset, taskList: { noop } });

if (mode === "throughput") {
  const t0 = wallMs();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i += 500) await utils.addJobs(Array.from({ length: Math.min(500, n - i) }, () => ({ identifier: "noop", payload: {} })));
  await finished;
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ tasksPerSec: n / ((wallMs() - t0) / 1000), cpuPerTaskUs: (cpu.user + cpu.system) / n }));
} else {
  const db = new pg.Pool({ connectionString, max: 4 });
  const gap = Number(gapRaw);
  const pickup: number[] = [];
  const visible: number[] = [];
  const follow = async (id: string, addedAt: number) => {
    while (!started.has(id)) await sleep(1);
    const startedAt = started.get(id)!;
    pickup.push(startedAt - addedAt);
    // A completed job's row is deleted: visible once it is gone.
    while ((await db.query("select 1 from graphile_worker._private_jobs where id = $1", [id])).rowCount) await sleep(1);
    visible.push(wallMs() - startedAt);
  };
  const following: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const began = wallMs();
    const job = await utils.addJob("noop", {});
    following.push(follow(String(job.id), wallMs()));
    const wait = gap - (wallMs() - began);
    if (wait > 0) await sleep(wait);
  }
  await Promise.all(following);
  await db.end();
  const p = (xs: number[], q: number) => percentile([...xs].sort((a, b) => a - b), q);
  console.log(JSON.stringify({ pickupP50: p(pickup, 0.5), pickupP95: p(pickup, 0.95), pickupP99: p(pickup, 0.99), visibleP50: p(visible, 0.5), visibleP99: p(visible, 0.99) }));
}
await runner.stop();
await utils.release();
