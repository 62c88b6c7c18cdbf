/**
 * Fan-out load for the benchmark, in one process:
 *
 *   workers N      N SDK workers, each its own stream with concurrency 1, each on its own connection
 *                  (or all on one, with BENCH_SHARED_CONNECTION=1); on SIGTERM prints the fewest
 *                  and most tasks any of them ran, as JSON
 *   watchers N     dispatches N tasks no worker takes and holds one WatchTask stream on each, over
 *                  as many connections as the per-connection limit needs; prints "watching" once all
 *                  N streams have their snapshot
 */
import { TaskClient, Worker, connect } from "@taskq/sdk";

const url = process.env.BENCH_URL!;
const [mode, nRaw] = process.argv.slice(2);
const n = Number(nRaw);
/** WatchTask streams per connection the server allows. */
const WATCHERS_PER_CONNECTION = 100;

if (mode === "workers") {
  const counts = new Array<number>(n).fill(0);
  // BENCH_SHARED_CONNECTION=1: the process's workers share one HTTP/2 connection instead of one each.
  const shared = process.env.BENCH_SHARED_CONNECTION === "1" ? connect({ url }) : null;
  const workers = Array.from({ length: n }, (_, i) => {
    const name = `fanout-${process.pid}-${i}`;
    const w = shared ? new Worker({ connection: shared, concurrency: 1, name }) : new Worker({ url, concurrency: 1, name });
    w.register("bench.noop", () => void counts[i]++);
    return w;
  });
  for (const w of workers) await w.start();
  console.log("ready");
  process.on("SIGTERM", () => {
    console.log(JSON.stringify({ fewest: Math.min(...counts), most: Math.max(...counts), total: counts.reduce((a, b) => a + b, 0) }));
    void Promise.all(workers.map((w) => w.stop({ graceMs: 1_000 }))).then(() => process.exit(0));
  });
} else if (mode === "watchers") {
  const clients = Array.from({ length: Math.ceil(n / WATCHERS_PER_CONNECTION) }, () => new TaskClient({ url }));
  const handles = await clients[0].dispatchBatch(Array.from({ length: n }, () => ({ type: "bench.watched" })));
  let snapshots = 0;
  handles.forEach((h, i) => {
    const client = clients[Math.floor(i / WATCHERS_PER_CONNECTION)];
    void (async () => {
      for await (const event of client.handle(h.id).watch()) {
        if (event.type === "snapshot" && ++snapshots === n) console.log("watching");
      }
    })().catch(() => {});
  });
  process.on("SIGTERM", () => process.exit(0));
} else throw new Error(`unknown mode ${mode}`);
