/**
 * pg-boss in one process, configured for speed as its documentation describes: LISTEN/NOTIFY on,
 * bulk insert(), batched fetches that keep fetching while batches come back full, several local
 * workers. BENCH_DATABASE_URL; prints one JSON line of results.
 *
 *   throughput N    insert N no-op jobs in batches of 500 while the workers drain them
 *   latency N GAP   send N jobs one at a time, GAP ms apart; pickup and completion-visible times
 */
import { PgBoss } from "pg-boss";
import { percentile, sleep, wallMs } from "./lib.js";

const connectionString = process.env.BENCH_DATABASE_URL!;
const [mode, nRaw, gapRaw] = process.argv.slice(2);
const n = Number(nRaw);

const boss = new PgBoss({ connectionString, max: 25, useListenNotify: true });
boss.on("error", (err) => console.error(err));
await boss.start();
await boss.createQueue("noop", { notify: true });
let done = 0;
let allDone!: () => void;
const finished = new Promise<void>((r) => (allDone = r));
const started = new Map<string, number>();

if (mode === "throughput") {
  await boss.work("noop", { batchSize: 100, localConcurrency: 4, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 }, async (jobs) => {
    done += jobs.length;
    if (done >= n) allDone();
  });
  const t0 = wallMs();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i += 500) await boss.insert("noop", Array.from({ length: Math.min(500, n - i) }, () => ({ data: {} })));
  await finished;
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ tasksPerSec: n / ((wallMs() - t0) / 1000), cpuPerTaskUs: (cpu.user + cpu.system) / n }));
} else {
  await boss.work("noop", { batchSize: 1, localConcurrency: 4, pollingIntervalSeconds: 0.5 }, async ([job]) => {
    started.set(job.id, wallMs());
  });
  const gap = Number(gapRaw);
  const pickup: number[] = [];
  const visible: number[] = [];
  const follow = async (id: string, sentAt: number) => {
    while (!started.has(id)) await sleep(1);
    const startedAt = started.get(id)!;
    pickup.push(startedAt - sentAt);
    while ((await boss.findJobs("noop", { id }))[0]?.state !== "completed") await sleep(1);
    visible.push(wallMs() - startedAt);
  };
  const following: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const began = wallMs();
    const id = (await boss.send("noop", {}))!;
    following.push(follow(id, wallMs()));
    const wait = gap - (wallMs() - began);
    if (wait > 0) await sleep(wait);
  }
  await Promise.all(following);
  const p = (xs: number[], q: number) => percentile([...xs].sort((a, b) => a - b), q);
  console.log(JSON.stringify({ pickupP50: p(pickup, 0.5), pickupP95: p(pickup, 0.95), pickupP99: p(pickup, 0.99), visibleP50: p(visible, 0.5), visibleP99: p(visible, 0.99) }));
}
await boss.stop({ graceful: false, wait: false } as never);
process.exit(0);
