/**
 * Interrupts: a pending task ends CANCELED at once; a running one is CANCELLING until its handler
 * returns, its grace period ends, or its worker is lost, and then CANCELED. Late finishes change nothing,
 * and an interrupt racing a finish never yields two final statuses.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, TaskAbortedError, TaskFailedError, type TaskqError, type WatchEvent } from "@taskq/sdk";
import { TaskStatus } from "@taskq/protocol";
import { CancelReason } from "@taskq/protocol";
import { Harness, waitFor } from "./helpers.js";

const GRACE_MS = 400;

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica({ cancelGraceMs: GRACE_MS });
});
after(() => h.close());

const historyRows = async (id: string) => (await h.pool.query("select * from taskq.history where id = $1", [id])).rows;

test("a pending task is canceled at once; interrupting it again is FAILED_PRECONDITION", async () => {
  const client = h.client();
  const handle = await client.dispatch("never-run", {}, { title: "waiting" });
  assert.equal(await handle.interrupt("no longer needed"), "canceled");
  const task = await handle.status();
  assert.equal(task.status, "canceled");
  assert.equal(task.error, "interrupted: no longer needed");
  assert.equal((await historyRows(handle.id)).length, 1);
  await assert.rejects(handle.result(), (err: TaskFailedError) => err instanceof TaskFailedError && err.status === "canceled");

  await assert.rejects(handle.interrupt(), (err: TaskqError) => {
    assert.equal(err.code, Code.FailedPrecondition);
    assert.match(err.message, /already finished as canceled/);
    return true;
  });
  await assert.rejects(client.interrupt("999999999"), (err: TaskqError) => err.code === Code.NotFound);
  assert.equal((await historyRows(handle.id)).length, 1);
});

test("a running task is CANCELLING until its handler returns, then CANCELED; the handler's signal says why", async () => {
  const client = h.client();
  let abortReason: unknown;
  const worker = h.worker({ concurrency: 1 });
  worker.register("stoppable", async (ctx) => {
    ctx.log("started");
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
    abortReason = ctx.signal.reason;
    ctx.log("cleaning up");
    return { partial: true };
  });
  const handle = await client.dispatch("stoppable");
  const events: WatchEvent[] = [];
  const watching = (async () => {
    for await (const e of handle.watch()) events.push(e);
  })();
  await worker.start();
  await waitFor("the task to run", async () => (await handle.status()).log.length === 1);

  assert.equal(await handle.interrupt("user asked"), "cancelling");
  await assert.rejects(handle.result(), (err: TaskFailedError) => err instanceof TaskFailedError && err.status === "canceled");
  await watching;

  assert.ok(abortReason instanceof TaskAbortedError && abortReason.reason === "interrupted", String(abortReason));
  const task = await handle.status();
  assert.equal(task.status, "canceled");
  assert.equal(task.result, undefined, "a canceled task records no result");
  assert.equal(task.error, "interrupted: user asked");
  assert.deepEqual(task.log.map((s) => s.message), ["started", "cleaning up"]);
  const statuses = events.flatMap((e) => (e.type === "status" ? [e.status] : e.type === "snapshot" ? [e.task.status] : []));
  assert.deepEqual(statuses.slice(-2), ["cancelling", "canceled"]);
  assert.equal(statuses.filter((s) => s === "canceled").length, 1);
});

test("a worker that ignores the cancel: CANCELED after the grace period, and its late finish is rejected", async () => {
  const client = h.client();
  const handle = await client.dispatch("stubborn");
  const raw = h.rawWorker();
  raw.hello(["stubborn"], 1);
  const lease = await raw.next("lease");
  const interruptedAt = Date.now();
  assert.equal(await handle.interrupt(), "cancelling");
  const cancel = await raw.next("cancel");
  assert.equal(cancel.leaseToken, lease.leaseToken);
  assert.equal(cancel.reason, CancelReason.INTERRUPTED);
  const cancelling = await handle.status();
  assert.equal(cancelling.status, "cancelling");
  assert.ok(cancelling.deadline, "a cancelling task shows when its grace period ends");

  await waitFor("the grace period to end", async () => (await handle.status()).status === "canceled", 10_000);
  assert.ok(Date.now() - interruptedAt >= GRACE_MS - 50, "not canceled before the grace period");
  const archived = await historyRows(handle.id);

  raw.send({ case: "finish", value: { taskId: handle.id, leaseToken: lease.leaseToken, outcome: { case: "success", value: {} } } });
  await raw.next("finishRejected");
  raw.send({ case: "logStep", value: { taskId: handle.id, leaseToken: lease.leaseToken, message: "too late" } });
  await raw.next("updateRejected");
  assert.deepEqual(await historyRows(handle.id), archived);
  assert.equal((await handle.status()).status, "canceled");
});

test("a worker lost while cancelling: the task ends CANCELED, not back in the queue", async () => {
  const client = h.client();
  const handle = await client.dispatch("abandoned", {}, { maxAttempts: 5 });
  const raw = h.rawWorker();
  raw.hello(["abandoned"], 1);
  await raw.next("lease");
  assert.equal(await handle.interrupt("stop"), "cancelling");
  await raw.next("cancel");
  await raw.close();
  await waitFor("the task to end", async () => (await handle.status()).status === "canceled", 5_000);
  assert.equal((await handle.status()).error, "interrupted: stop");
});

test("an interrupt racing a finish, 50 times: one final status each, and the answers agree with it", async (t) => {
  // A replica with the default grace period, so every finish lands before the grace ends.
  const replica = await h.replica();
  const client = h.client(replica);
  const raw = h.rawWorker(replica);
  raw.hello(["racing"], 0);
  await raw.next("welcome");
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const outcomes = { completed: 0, canceled: 0 };
  for (let i = 0; i < 50; i++) {
    const handle = await client.dispatch("racing", { i });
    raw.send({ case: "credits", value: { count: 1 } });
    const lease = await raw.next("lease");
    const finals: string[] = [];
    const watching = (async () => {
      for await (const e of handle.watch()) {
        const status = e.type === "status" ? e.status : e.type === "snapshot" ? e.task.status : null;
        if (status && ["completed", "failed", "canceled", "stuck"].includes(status)) finals.push(status);
      }
    })();
    await waitFor("the watcher to subscribe", () => replica.engine.watcherCount === 1);

    // From the interrupt 5 ms ahead to the finish 5 ms ahead, so both orders and near-ties occur.
    const lead = (i % 11) - 5;
    const finish = () =>
      raw.send({ case: "finish", value: { taskId: handle.id, leaseToken: lease.leaseToken, outcome: { case: "success", value: {} } } });
    const interrupt = () =>
      handle.interrupt("race").catch((err: TaskqError) => {
        if (err.code === Code.FailedPrecondition) return "already finished" as const;
        throw err;
      });
    let answer: Promise<string>;
    if (lead >= 0) {
      finish();
      await pause(lead);
      answer = interrupt();
    } else {
      answer = interrupt();
      await pause(-lead);
      finish();
    }
    const interrupted = await answer;
    const ack = await raw.nextOf(["finishAck", "finishRejected"]);
    await watching;

    const rows = (await h.pool.query<{ status: string }>("select status from taskq.history where id = $1", [handle.id])).rows;
    assert.equal(rows.length, 1, `task ${handle.id} has exactly one history row`);
    const status = rows[0].status as "completed" | "canceled";
    outcomes[status] += 1;
    assert.deepEqual(finals, [status], `task ${handle.id}: the watcher saw one final status`);
    if (interrupted === "cancelling") assert.equal(status, "canceled", "an interrupt that found the task running decides");
    else assert.equal(status, "completed", "an interrupt refused as finished means the finish won");
    // A cancelling task still holds its lease, so the finish is accepted, and its ack names the final status.
    assert.equal(ack.case, "finishAck");
    if (ack.case === "finishAck") assert.equal(TaskStatus[ack.value.status].toLowerCase(), status);
  }
  assert.equal(await h.count("tasks"), 0);
  t.diagnostic(`races: ${outcomes.completed} won by the finish, ${outcomes.canceled} by the interrupt`);
});
