/**
 * A result larger than the server keeps (1 MiB as JSON) fails the attempt, saying why: the task's retry
 * policy then applies, so it runs again while attempts remain and ends FAILED after the last. This holds
 * for a worker in any language (a hand-driven stream) and for the SDK worker, which fails the attempt
 * itself rather than send a message the server may not even read (past 4 MiB it would end the stream).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { LIMITS } from "../packages/server/src/rpc/validate.js";
import type { TaskHandle } from "@taskq/sdk";
import { TaskStatus } from "@taskq/protocol";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica();
});
after(() => h.close());

/** The task once it has ended, polled (a broken run fails at the deadline instead of hanging). */
const ended = (handle: TaskHandle) =>
  waitFor("the task to end", async () => {
    const t = await handle.status();
    return ["completed", "failed", "stuck", "canceled"].includes(t.status) ? t : null;
  });

const TOO_LARGE = /^the worker's finish was refused: result: \d+ bytes, larger than the limit of 1048576$/;
const oversized = () => "r".repeat(LIMITS.resultBytes); // with its quotes, two bytes over as JSON

test("a result over the limit fails the attempt: the task is retried, and FAILED after its last attempt", async () => {
  const client = h.client();
  const handle = await client.dispatch("result-size.raw", {}, { maxAttempts: 2, retryDelayMs: 0, backoff: "fixed" });
  const w = h.rawWorker();
  w.hello(["result-size.raw"], 1);
  const finishTooLarge = async (attempt: number) => {
    const lease = await w.next("lease");
    assert.equal(lease.taskId, handle.id);
    assert.equal(lease.attempt, attempt);
    const result = { kind: { case: "stringValue" as const, value: oversized() } };
    w.send({ case: "finish", value: { taskId: lease.taskId, leaseToken: lease.leaseToken, outcome: { case: "success", value: { result } } } });
    return (await w.next("finishAck")).status;
  };

  assert.equal(await finishTooLarge(1), TaskStatus.PENDING, "attempts remain: the task goes back to the queue");
  const retried = await client.status(handle.id);
  assert.equal(retried.status, "pending");
  assert.equal(retried.attempts, 1);
  assert.match(retried.error, TOO_LARGE);
  assert.equal(retried.result, undefined);

  w.send({ case: "credits", value: { count: 1 } });
  assert.equal(await finishTooLarge(2), TaskStatus.FAILED, "the last attempt: the task fails");
  const failed = await client.status(handle.id);
  assert.equal(failed.status, "failed");
  assert.equal(failed.attempts, 2);
  assert.match(failed.error, TOO_LARGE);
});

test("SDK worker: a handler's result over the limit is retried, and the next attempt's result kept", async () => {
  const seen: number[] = [];
  const worker = h.worker({ concurrency: 1 });
  worker.register("result-size.sdk", (ctx) => {
    seen.push(ctx.attempt);
    return ctx.attempt === 1 ? oversized() : "small enough";
  });
  await worker.start();
  const handle = await h.client().dispatch("result-size.sdk", {}, { maxAttempts: 3, retryDelayMs: 0, backoff: "fixed" });
  const task = await ended(handle);
  assert.equal(task.status, "completed");
  assert.equal(task.result, "small enough");
  assert.equal(task.attempts, 2);
  assert.deepEqual(seen, [1, 2]);
});

test("SDK worker: a result past the server's message limit fails only its attempt, not the worker's stream", async () => {
  const events: string[] = [];
  const worker = h.worker({ concurrency: 2, onEvent: (e) => void events.push(e) });
  worker.register("result-size.huge", (ctx) => (ctx.attempt === 1 ? "h".repeat(5 * 1024 * 1024) : "fine"));
  await worker.start();
  const handle = await h.client().dispatch("result-size.huge", {}, { maxAttempts: 2, retryDelayMs: 0, backoff: "fixed" });
  const task = await ended(handle);
  assert.equal(task.status, "completed");
  assert.equal(task.result, "fine");
  assert.equal(task.attempts, 2);
  assert.deepEqual(events, ["connected"], "the stream was never broken");
});
