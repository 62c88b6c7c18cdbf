/**
 * Timeouts: which timeout applies (the task's, the type's from the worker's hello, the queue's, the
 * server default), and what happens when an attempt exceeds it: the worker is told cancel(timed_out),
 * the attempt counts as failed, the retry rule applies, and STUCK when attempts are exhausted.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import { DEFAULT_TIMEOUT_MS } from "../packages/server/src/engine/index.js";
import { TaskAbortedError, TaskFailedError } from "@taskq/sdk";
import { CancelReason } from "@taskq/protocol";
import { Harness, waitFor, type RawWorker } from "./helpers.js";

describe("with an injected clock", () => {
  let h: Harness;
  const clock = new ManualClock(new Date("2026-06-01T09:00:00Z"));
  before(async () => {
    h = await Harness.create();
    await h.replica({ queues: { reports: { timeoutMs: 120_000 } }, taskTypes: { configured: { timeoutMs: 45_000 } } }, { clock });
  });
  after(() => h.close());

  const helloWithTimeouts = (raw: RawWorker, types: Record<string, number | undefined>, credits: number) => {
    raw.send({
      case: "hello",
      value: {
        workerName: "timed",
        taskTypes: Object.entries(types).map(([name, ms]) => ({
          name,
          timeout: ms === undefined ? undefined : { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 },
        })),
      },
    });
    raw.send({ case: "credits", value: { count: credits } });
  };

  test("the timeout that applies: the task's, else the type's (hello, then config), else the queue's, else the default", async () => {
    const client = h.client();
    const own = await client.dispatch("typed", {}, { timeoutMs: 3_000 });
    const byType = await client.dispatch("typed", {}, { queue: "reports" });
    const byConfiguredType = await client.dispatch("configured", {}, { queue: "reports" });
    const byQueue = await client.dispatch("untyped", {}, { queue: "reports" });
    const byDefault = await client.dispatch("untyped");
    const raw = h.rawWorker();
    helloWithTimeouts(raw, { typed: 7_000, configured: undefined, untyped: undefined }, 5);
    const timeouts = new Map<string, number>();
    const tokens = new Map<string, string>();
    for (let i = 0; i < 5; i++) {
      const lease = await raw.next("lease");
      timeouts.set(lease.taskId, durationMs(lease.timeout!));
      tokens.set(lease.taskId, lease.leaseToken);
    }
    assert.equal(timeouts.get(own.id), 3_000);
    assert.equal(timeouts.get(byType.id), 7_000);
    assert.equal(timeouts.get(byConfiguredType.id), 45_000);
    assert.equal(timeouts.get(byQueue.id), 120_000);
    assert.equal(timeouts.get(byDefault.id), DEFAULT_TIMEOUT_MS);
    const status = await own.status();
    assert.equal(status.deadline?.getTime(), clock.now().getTime() + 3_000, "Status shows when the attempt times out");
    for (const [taskId, leaseToken] of tokens) raw.send({ case: "finish", value: { taskId, leaseToken, outcome: { case: "success", value: {} } } });
    for (let i = 0; i < 5; i++) await raw.next("finishAck");
  });

  test("a timed-out attempt: cancel(timed_out), counted as failed, retried after the delay, then STUCK", async () => {
    const client = h.client();
    const handle = await client.dispatch("slow", {}, { timeoutMs: 5_000, maxAttempts: 2, retryDelayMs: 1_000 });
    const raw = h.rawWorker();
    helloWithTimeouts(raw, { slow: undefined }, 2);
    const first = await raw.next("lease");
    assert.equal(first.attempt, 1);

    clock.advance(4_999);
    assert.deepEqual((await h.replicas[0].engine.sweep()).expired, [], "not a millisecond early");
    clock.advance(1);
    const swept = await h.replicas[0].engine.sweep();
    assert.deepEqual(swept.expired, [{ id: handle.id, status: "pending" }]);
    const cancel = await raw.next("cancel");
    assert.equal(cancel.leaseToken, first.leaseToken);
    assert.equal(cancel.reason, CancelReason.TIMED_OUT);
    const retrying = await handle.status();
    assert.equal(retrying.status, "pending");
    assert.equal(retrying.attempts, 1);
    assert.equal(retrying.error, "attempt 1 timed out after 5s");
    assert.equal(retrying.nextTryAt?.getTime(), clock.now().getTime() + 1_000, "the retry delay applies");

    // The timed-out attempt's finish changes nothing.
    raw.send({ case: "finish", value: { taskId: handle.id, leaseToken: first.leaseToken, outcome: { case: "success", value: {} } } });
    await raw.next("finishRejected");
    assert.equal((await handle.status()).status, "pending");

    clock.advance(1_000);
    h.replicas[0].engine.poke();
    const second = await raw.next("lease");
    assert.equal(second.attempt, 2);
    clock.advance(5_000);
    assert.deepEqual((await h.replicas[0].engine.sweep()).expired, [{ id: handle.id, status: "stuck" }]);
    assert.equal((await raw.next("cancel")).reason, CancelReason.TIMED_OUT);
    const stuck = await handle.status();
    assert.equal(stuck.status, "stuck");
    assert.equal(stuck.attempts, 2);
    assert.equal(stuck.error, "attempt 2 timed out after 5s");
    await assert.rejects(handle.result(), (err: TaskFailedError) => err instanceof TaskFailedError && err.status === "stuck");
  });

  test("a finish that lands before the sweep wins; the sweep then changes nothing", async () => {
    const client = h.client();
    const handle = await client.dispatch("quick", {}, { timeoutMs: 1_000 });
    const raw = h.rawWorker();
    helloWithTimeouts(raw, { quick: undefined }, 1);
    const lease = await raw.next("lease");
    clock.advance(2_000);
    raw.send({ case: "finish", value: { taskId: handle.id, leaseToken: lease.leaseToken, outcome: { case: "success", value: {} } } });
    await raw.next("finishAck");
    assert.deepEqual((await h.replicas[0].engine.sweep()).expired, []);
    assert.equal((await handle.status()).status, "completed");
  });
});

describe("with a short timeout on the real clock", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    await h.replica();
  });
  after(() => h.close());

  test("the SDK handler's signal fires with reason timed_out, and the task ends STUCK on its last attempt", async () => {
    const client = h.client();
    const reasons: unknown[] = [];
    const worker = h.worker({ concurrency: 2 });
    worker.register("sleepy", async (ctx) => {
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
      reasons.push(ctx.signal.reason);
      return "too late";
    });
    await worker.start();
    const handle = await client.dispatch("sleepy", {}, { timeoutMs: 300, maxAttempts: 2, retryDelayMs: 0 });
    await assert.rejects(handle.result(), (err: TaskFailedError) => err instanceof TaskFailedError && err.status === "stuck");
    const task = await handle.status();
    assert.equal(task.attempts, 2);
    assert.match(task.error, /^attempt 2 timed out after 0\.3s$/);
    await waitFor("both handlers to see the abort", () => reasons.length === 2, 5_000);
    for (const r of reasons) assert.ok(r instanceof TaskAbortedError && r.reason === "timed_out", String(r));
    assert.equal(task.result, undefined);
  });
});
