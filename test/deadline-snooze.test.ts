/**
 * A handler that legitimately runs long extends its deadline (WorkerMessage.extend_deadline,
 * ctx.extendDeadline); one that cannot proceed yet snoozes (Finish.snooze, ctx.snooze): the task waits
 * and runs again without spending an attempt.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RejectReason, TaskStatus } from "@taskq/protocol";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import type { Replica } from "../packages/server/src/app.js";
import { Harness } from "./helpers.js";

const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1_000_000 });

describe("on the wire, with an injected clock", () => {
  const clock = new ManualClock(new Date("2026-06-01T09:00:00Z"));
  let h: Harness;
  let replica: Replica;
  before(async () => {
    h = await Harness.create();
    replica = await h.replica({}, { clock });
  });
  after(() => h.close());

  test("extend_deadline moves a running attempt's deadline later, never earlier; the reaper keeps to the new one", async () => {
    const handle = await h.client().dispatch("deadline.extend", {}, { timeoutMs: 5_000, maxAttempts: 1 });
    const w = h.rawWorker();
    w.hello(["deadline.extend"], 1);
    const lease = await w.next("lease");
    const fence = { taskId: handle.id, leaseToken: lease.leaseToken };
    const leasedAt = clock.now().getTime();

    w.send({ case: "extendDeadline", value: { ...fence, timeout: ms(60_000) } });
    w.send({ case: "extendDeadline", value: { ...fence, timeout: ms(1_000) } }); // earlier than it has: no change
    w.send({ case: "logStep", value: { ...fence, message: "after the extensions" } });
    await waitForLog(handle.id, 1);
    assert.equal((await handle.status()).deadline?.getTime(), leasedAt + 60_000);

    clock.advance(10_000);
    assert.deepEqual((await replica.engine.sweep()).expired, [], "past the first deadline, not the new one");
    clock.advance(50_000);
    assert.deepEqual((await replica.engine.sweep()).expired, [{ id: handle.id, status: "stuck" }]);
    assert.equal((await w.next("cancel")).leaseToken, lease.leaseToken);
  });

  test("extend_deadline is refused in-band: a bad timeout INVALID, an interrupted task NOT_HELD", async () => {
    const handle = await h.client().dispatch("deadline.refused", {}, { timeoutMs: 5_000 });
    const w = h.rawWorker();
    w.hello(["deadline.refused"], 1);
    const lease = await w.next("lease");
    const fence = { taskId: handle.id, leaseToken: lease.leaseToken };
    w.send({ case: "extendDeadline", value: { ...fence } });
    let r = await w.next("updateRejected");
    assert.deepEqual([r.code, r.reason], [RejectReason.INVALID, "timeout: required"]);
    w.send({ case: "extendDeadline", value: { ...fence, timeout: ms(0) } });
    r = await w.next("updateRejected");
    assert.equal(r.code, RejectReason.INVALID);
    assert.match(r.reason, /^timeout: must be between 1 ms and 7 days$/);

    await handle.interrupt();
    await w.next("cancel");
    const graceEnds = (await handle.status()).deadline?.getTime();
    w.send({ case: "extendDeadline", value: { ...fence, timeout: ms(3_600_000) } });
    r = await w.next("updateRejected");
    assert.equal(r.code, RejectReason.NOT_HELD);
    assert.equal((await handle.status()).deadline?.getTime(), graceEnds, "a grace period is not extended");
  });

  test("snooze puts the task back to wait its delay, the attempt not counted, as often as it likes", async () => {
    const handle = await h.client().dispatch("deadline.snooze", {}, { maxAttempts: 1 });
    const w = h.rawWorker();
    w.hello(["deadline.snooze"], 1);
    for (let round = 1; round <= 2; round++) {
      const lease = await w.next("lease");
      assert.equal(lease.attempt, 1, "a snoozed attempt is not spent");
      w.send({ case: "finish", value: { taskId: handle.id, leaseToken: lease.leaseToken, outcome: { case: "snooze", value: { delay: ms(30_000) } } } });
      assert.equal((await w.next("finishAck")).status, TaskStatus.PENDING);
      w.send({ case: "credits", value: { count: 1 } });
      const waiting = await handle.status();
      assert.equal(waiting.status, "pending");
      assert.equal(waiting.attempts, 0);
      assert.equal(waiting.nextTryAt?.getTime(), clock.now().getTime() + 30_000);
      assert.equal(waiting.waiting?.reason, "not_due");
      clock.advance(30_000);
      replica.engine.poke();
    }
    const last = await w.next("lease");
    w.send({ case: "finish", value: { taskId: handle.id, leaseToken: last.leaseToken, outcome: { case: "success", value: {} } } });
    assert.equal((await w.next("finishAck")).status, TaskStatus.COMPLETED);
    const done = await handle.status();
    assert.deepEqual(
      done.attemptHistory.map((a) => [a.number, a.outcome]),
      [
        [1, "snoozed"],
        [1, "snoozed"],
        [1, "succeeded"],
      ],
    );
  });

  async function waitForLog(id: string, steps: number) {
    for (let i = 0; i < 200; i++) {
      if ((await h.client().status(id)).log.length >= steps) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`task ${id}: fewer than ${steps} log steps`);
  }
});

describe("from the SDK", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.create();
    // Sweeps every 500 ms, and at each deadline the replica knows of.
    await h.replica({ staleCheckMs: 2_000 });
  });
  after(() => h.close());

  test("ctx.extendDeadline lets a handler outlive its timeout; ctx.snooze runs it again without spending an attempt", async () => {
    const runs: number[] = [];
    const worker = h.worker({ concurrency: 2 });
    worker.register("deadline.sdk-long", async (ctx) => {
      ctx.extendDeadline(60_000);
      await new Promise((resolve) => setTimeout(resolve, 1_500)); // three times its timeout
      return ctx.signal.aborted ? "aborted" : "outlived its timeout";
    });
    worker.register("deadline.sdk-snooze", (ctx) => {
      runs.push(ctx.attempt);
      if (runs.length === 1) ctx.snooze(200);
      return "second run";
    });
    await worker.start();
    const long = await h.client().dispatch("deadline.sdk-long", {}, { timeoutMs: 500, maxAttempts: 1 });
    const snoozed = await h.client().dispatch("deadline.sdk-snooze", {}, { maxAttempts: 1 });
    assert.equal(await long.result(), "outlived its timeout");
    assert.equal(await snoozed.result(), "second run");
    assert.deepEqual(runs, [1, 1]);
    const status = await snoozed.status();
    assert.deepEqual(
      status.attemptHistory.map((a) => a.outcome),
      ["snoozed", "succeeded"],
    );
    const gap = status.attemptHistory[1].startedAt.getTime() - (status.attemptHistory[0].endedAt?.getTime() ?? 0);
    assert.ok(gap >= 200, `ran again ${gap} ms after snoozing for 200`);
  });
});
