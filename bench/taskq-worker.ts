/**
 * A benchmark worker process: an SDK Worker whose handler does nothing but report when it started and
 * returned (wall-clock ms), in its result. BENCH_URL, BENCH_CONCURRENCY.
 */
import { Worker } from "@taskq/sdk";
import { wallMs } from "./lib.js";

const worker = new Worker({ url: process.env.BENCH_URL!, concurrency: Number(process.env.BENCH_CONCURRENCY ?? 100), name: `bench-${process.pid}` });
worker.register("bench.noop", () => {
  const startedAt = wallMs();
  return { startedAt, returnedAt: wallMs() };
});
await worker.start();
console.log("ready");
process.on("SIGTERM", () => void worker.stop({ graceMs: 2_000 }).then(() => process.exit(0)));
