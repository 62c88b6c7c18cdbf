/**
 * Every attempt of a task, as Status returns it (Task.attempt_history): its number, worker, replica,
 * start and end, and how it ended, read from the task's record of status changes.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { AttemptInfo } from "@taskq/sdk";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import { attemptsOf } from "../packages/server/src/engine/index.js";
import type { StatusChange } from "../packages/server/src/engine/types.js";
import { Harness } from "./helpers.js";

const clock = new ManualClock(new Date("2026-06-01T09:00:00Z"));
let h: Harness;
let replicaId: string;
before(async () => {
  h = await Harness.create();
  const replica = await h.replica({}, { clock });
  replicaId = replica.engine.replicaId;
});
after(() => h.close());

/** The attempts without their times, which the test checks apart. */
const shapes = (attempts: AttemptInfo[]) => attempts.map(({ number, worker, replica, outcome, error }) => ({ number, worker, replica, outcome, error }));

describe("attempt history", () => {
  test("a failed attempt, a timed-out one and a successful one, in order; the completed task's error is empty", async () => {
    const handle = await h.client().dispatch("attempts.mixed", {}, { maxAttempts: 3, retryDelayMs: 0, backoff: "fixed", timeoutMs: 5_000 });
    const w = h.rawWorker();
    w.hello(["attempts.mixed"], 3);

    const first = await w.next("lease");
    w.send({ case: "finish", value: { taskId: handle.id, leaseToken: first.leaseToken, outcome: { case: "retry", value: { error: "upstream said 503" } } } });
    await w.next("finishAck");
    clock.advance(1);
    h.replicas[0].engine.poke();

    const second = await w.next("lease");
    assert.equal(second.attempt, 2);
    const running = await handle.status();
    assert.deepEqual(shapes(running.attemptHistory).map((a) => a.outcome), ["failed", "running"]);
    assert.equal(running.attemptHistory[1].endedAt, null);

    clock.advance(5_000);
    await h.replicas[0].engine.sweep();
    await w.next("cancel");
    clock.advance(1);
    h.replicas[0].engine.poke();

    const third = await w.next("lease");
    assert.equal(third.attempt, 3);
    w.send({ case: "finish", value: { taskId: handle.id, leaseToken: third.leaseToken, outcome: { case: "success", value: {} } } });
    await w.next("finishAck");

    const done = await handle.status();
    assert.equal(done.status, "completed");
    assert.equal(done.error, "", "a completed task's error is empty, whatever an earlier attempt left");
    assert.deepEqual(shapes(done.attemptHistory), [
      { number: 1, worker: "raw", replica: replicaId, outcome: "failed", error: "upstream said 503" },
      { number: 2, worker: "raw", replica: replicaId, outcome: "timed_out", error: "attempt 2 timed out after 5s" },
      { number: 3, worker: "raw", replica: replicaId, outcome: "succeeded", error: "" },
    ]);
    for (const a of done.attemptHistory) {
      assert.ok(a.endedAt && a.endedAt.getTime() >= a.startedAt.getTime(), `attempt ${a.number} ends after it starts`);
    }
    const timedOut = done.attemptHistory[1];
  assert.ok(timedOut.endedAt && timedOut.endedAt.getTime() >= timedOut.startedAt.getTime() + 5_000, "the timed-out attempt ended at its deadline or after");
  });

  test("a declined lease is given back and its number used again; a worker that leaves loses its attempt; the last one lost ends STUCK", async () => {
    const handle = await h.client().dispatch("attempts.lost", {}, { maxAttempts: 1 });
    const w = h.rawWorker();
    w.hello(["attempts.lost"], 1);
    const first = await w.next("lease");
    w.send({ case: "finish", value: { taskId: handle.id, leaseToken: first.leaseToken, outcome: { case: "decline", value: {} } } });
    await w.next("finishAck");
    w.send({ case: "credits", value: { count: 1 } });
    const again = await w.next("lease");
    assert.equal(again.attempt, 1);
    await w.close(); // half-closes with the lease held: the attempt counts, and it was the last

    const stuck = await handle.result().then(
      () => null,
      () => handle.status(),
    );
    assert.ok(stuck);
    assert.equal(stuck.status, "stuck");
    assert.deepEqual(
      shapes(stuck.attemptHistory).map(({ number, outcome }) => ({ number, outcome })),
      [
        { number: 1, outcome: "given_back" },
        { number: 1, outcome: "lost" },
      ],
    );
    assert.equal(stuck.attemptHistory[1].error, "worker disconnected");
  });

  test("an interrupted attempt ends canceled with the interrupt's reason; a task interrupted while pending has none", async () => {
    const client = h.client();
    const running = await client.dispatch("attempts.interrupted", {});
    const w = h.rawWorker();
    w.hello(["attempts.interrupted"], 1);
    const lease = await w.next("lease");
    await running.interrupt("no longer needed");
    await w.next("cancel");
    w.send({ case: "finish", value: { taskId: running.id, leaseToken: lease.leaseToken, outcome: { case: "failure", value: { error: "stopped" } } } });
    await w.next("finishAck");
    const canceled = await running.status();
    assert.deepEqual(shapes(canceled.attemptHistory), [{ number: 1, worker: "raw", replica: replicaId, outcome: "canceled", error: "interrupted: no longer needed" }]);

    const pending = await client.dispatch("attempts.never-leased", {});
    await pending.interrupt();
    assert.deepEqual((await pending.status()).attemptHistory, []);
  });

  test("lists and watches carry no attempt history; Status does", async () => {
    const handle = await h.client().dispatch("attempts.lists", {});
    const page = await h.client().listActive({ id: handle.id });
    assert.deepEqual(page.tasks[0].attemptHistory, []);
  });
});

test("attempts recorded before replicas and end reasons were (migration 009) are still told apart", () => {
  const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms);
  const change = (status: StatusChange["status"], attempts: number, ms: number, error = "", worker = ""): StatusChange => ({ status, attempts, worker, error, at: at(ms), logSeq: 0 });
  const outcomes = (changes: StatusChange[]) => attemptsOf(changes).map((a) => [a.number, a.worker, a.replica, a.outcome, a.endedAt?.getTime() ?? null]);
  assert.deepEqual(
    outcomes([
      change("pending", 0, 0),
      change("running", 1, 10, "", "w1"),
      change("pending", 0, 20), // given back at a server shutdown: the count went down
      change("running", 1, 30, "", "w2"),
      change("pending", 1, 40, "boom"),
      change("running", 2, 50, "", "w3"),
      change("cancelling", 2, 55, "interrupted", "w3"),
    ]),
    [
      [1, "w1", "", "given_back", at(20).getTime()],
      [1, "w2", "", "failed", at(40).getTime()],
      [2, "w3", "", "running", null],
    ],
  );
  assert.deepEqual(
    outcomes([
      change("running", 1, 10, "", "w1"),
      change("stuck", 1, 20, "attempt 1 timed out after 5s", "w1"),
    ]),
    [[1, "w1", "", "timed_out", at(20).getTime()]],
  );
  assert.deepEqual(
    outcomes([
      change("running", 1, 10, "", "w1"),
      change("stuck", 1, 20, "worker lost: its session is gone", "w1"),
    ]),
    [[1, "w1", "", "lost", at(20).getTime()]],
  );
});
