/**
 * A task is leased when it becomes due, whatever made it due: a retry's delay (from a plain worker or
 * the SDK), a timed-out attempt's retry, `delay`, `run_at`. The replica here polls once a minute, so
 * nothing in these tests can be the safety-net poll's doing: a test that waited for the poll would
 * time out first.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { Replica } from "../packages/server/src/app.js";
import { RetryableError } from "@taskq/sdk";
import { CancelReason } from "@taskq/protocol";
import { Harness } from "./helpers.js";

const DELAY_MS = 300;

let h: Harness;
let replica: Replica;
before(async () => {
  h = await Harness.create();
  replica = await h.replica({ pollIntervalMs: 60_000 });
});
after(() => h.close());

/** When the task went back to wait, and when it was leased again, by its recorded status changes. */
async function retryGap(id: string): Promise<{ waitedAt: number; leasedAt: number }> {
  const task = await replica.engine.status(id);
  const latestFirst = [...task.statusChanges].reverse();
  const waited = latestFirst.find((c) => c.status === "pending")!;
  const leased = latestFirst.find((c) => c.status === "running")!;
  return { waitedAt: waited.at.getTime(), leasedAt: leased.at.getTime() };
}

test("a plain worker's retry with a 300 ms delay is leased again once the delay is over, not at the next poll", async () => {
  const { id } = await h.client().dispatch("flaky.raw", {}, { maxAttempts: 2 });
  const raw = h.rawWorker();
  raw.hello(["flaky.raw"], 2);
  const first = await raw.next("lease");
  raw.send({
    case: "finish",
    value: { taskId: first.taskId, leaseToken: first.leaseToken, outcome: { case: "retry", value: { error: "busy", delay: durationFromMs(DELAY_MS) } } },
  });
  const second = await raw.next("lease", 15_000);
  assert.equal(second.attempt, 2);
  const { waitedAt, leasedAt } = await retryGap(id);
  assert.ok(leasedAt - waitedAt >= DELAY_MS, `leased ${leasedAt - waitedAt} ms after the retry: not before its delay`);
});

test("the SDK's RetryableError({ delayMs: 300 }) runs again once the delay is over", async () => {
  const worker = h.worker();
  let attempts = 0;
  worker.register("flaky.sdk", async () => {
    if (++attempts === 1) throw new RetryableError("not yet", { delayMs: DELAY_MS });
    return "fetched";
  });
  await worker.start();
  const handle = await h.client().dispatch("flaky.sdk", {}, { maxAttempts: 2 });
  assert.equal(await handle.result(), "fetched");
  const { waitedAt, leasedAt } = await retryGap(handle.id);
  assert.ok(leasedAt - waitedAt >= DELAY_MS);
  await worker.stop();
});

test("a timed-out attempt's retry is leased once its delay is over", async () => {
  const { id } = await h.client().dispatch("slow.raw", {}, { maxAttempts: 2, timeoutMs: 200, retryDelayMs: DELAY_MS });
  const raw = h.rawWorker();
  raw.hello(["slow.raw"], 2);
  assert.equal((await raw.next("lease")).attempt, 1); // and never finished
  assert.equal((await raw.next("cancel", 15_000)).reason, CancelReason.TIMED_OUT);
  assert.equal((await raw.next("lease", 15_000)).attempt, 2);
  const { waitedAt, leasedAt } = await retryGap(id);
  assert.ok(leasedAt - waitedAt >= DELAY_MS);
});

test("tasks dispatched with a delay or a run_at are leased when they become due", async () => {
  const raw = h.rawWorker();
  raw.hello(["later"], 2);
  const client = h.client();
  const delayed = await client.dispatch("later", {}, { delayMs: DELAY_MS });
  const scheduled = await client.dispatch("later", {}, { runAt: new Date(Date.now() + DELAY_MS) });
  const leased = new Set([(await raw.next("lease", 15_000)).taskId, (await raw.next("lease", 15_000)).taskId]);
  assert.deepEqual(leased, new Set([delayed.id, scheduled.id]));
});
