/**
 * A benchmark load generator process, talking to the server over gRPC like any client.
 *
 *   batches N SIZE [PARALLEL]   dispatch N no-op tasks in batches of SIZE, PARALLEL batches in flight
 *   keys N SIZE [PARALLEL]      as batches, (g)'s workload: 90 % of N under the key "big" first, then
 *                               the rest spread over small1..small9; BENCH_KEYED=0 gives no key
 *   single N CALLERS            N single Dispatch calls from CALLERS concurrent callers
 *   latency N GAP_MS            N tasks one at a time, GAP_MS apart, each watched until its outcome
 *                               is committed; prints one JSON line per task with the times
 *
 * Prints "start <wall ms>" before the first call and "done <wall ms>" after the last.
 */
import { TaskClient, type DispatchItem, type TaskHandle } from "@taskq/sdk";
import { sleep, wallMs } from "./lib.js";

// BENCH_MERGE=off: every dispatch() a Dispatch call of its own (the SDK merges concurrent ones by default).
const client = new TaskClient({ url: process.env.BENCH_URL!, mergeDispatches: process.env.BENCH_MERGE !== "off" });
const [mode, ...rest] = process.argv.slice(2);
const n = Number(rest[0]);
const PRIORITY = Number(process.env.BENCH_PRIORITY ?? 0);

async function batches(total: number, size: number, parallel: number, item: (i: number) => DispatchItem = () => ({ type: "bench.noop", priority: PRIORITY })) {
  let next = 0;
  const lane = async () => {
    while (next < total) {
      const from = next;
      next = Math.min(total, next + size);
      await client.dispatchBatch(Array.from({ length: next - from }, (_, j) => item(from + j)));
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
}

/**
 * The big key's whole backlog goes in before any small key's task, so that plain FIFO order would
 * serve the small keys last. Each task names its key in its params as well: (g) tells the keys apart
 * by that, in the variant that dispatches them without a key.
 */
async function keys(size: number, parallel: number) {
  const big = Math.round(n * 0.9);
  const keyed = process.env.BENCH_KEYED !== "0";
  const item = (key: string): DispatchItem => ({ type: "bench.noop", params: { key }, concurrencyKey: keyed ? key : undefined });
  await batches(big, size, parallel, () => item("big"));
  await batches(n - big, size, parallel, (i) => item(`small${(i % 9) + 1}`));
}

async function single(callers: number) {
  let next = 0;
  const caller = async () => {
    while (next++ < n) await client.dispatch("bench.noop", {}, { priority: PRIORITY });
  };
  await Promise.all(Array.from({ length: callers }, caller));
}

async function latency(gapMs: number) {
  // Each task is followed with WatchTask: its final status arrives once the outcome is committed (the
  // notification follows the commit), which is when Status would show it, without polling the server.
  const follow = async (dispatchedAt: number, handle: TaskHandle) => {
    for await (const event of handle.watch()) {
      const done = event.type === "status" && event.status === "completed" ? event.result : event.type === "snapshot" && event.task.status === "completed" ? event.task.result : undefined;
      if (done === undefined) continue;
      const visibleAt = wallMs();
      const r = done as { startedAt: number; returnedAt: number };
      console.log(JSON.stringify({ id: handle.id, dispatchedAt, startedAt: r.startedAt, returnedAt: r.returnedAt, visibleAt }));
      return;
    }
  };
  const following: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const began = wallMs();
    const task = await client.dispatch("bench.noop");
    following.push(follow(wallMs(), task));
    const wait = gapMs - (wallMs() - began);
    if (wait > 0) await sleep(wait);
  }
  await Promise.all(following);
}

console.log(`start ${wallMs()}`);
if (mode === "batches") await batches(n, Number(rest[1]), Number(rest[2] ?? 1));
else if (mode === "keys") await keys(Number(rest[1]), Number(rest[2] ?? 1));
else if (mode === "single") await single(Number(rest[1]));
else if (mode === "latency") await latency(Number(rest[1]));
else throw new Error(`unknown mode ${mode}`);
console.log(`done ${wallMs()}`);
client.close();
