/**
 * Retry: a FAILED, CANCELED or STUCK task runs again as a fresh task with the same settings, linked both
 * ways (retry_of, retried_as); retrying it again returns that retry; active and COMPLETED tasks are
 * refused and nothing changes.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { Code, type TaskHandle, type TaskInfo, type TaskqError } from "@taskq/sdk";
import { TaskQueue } from "@taskq/protocol";
import { Harness, type RawWorker, waitFor } from "./helpers.js";

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica({ queues: { reports: { maxWorkers: 3 } } });
});
after(() => h.close());

let typeSeq = 0;
/** A task type no other test uses, so a test's workers lease only its own tasks. */
const freshType = (name: string) => `retry.${name}.${++typeSeq}`;

/** Leases the next task of `raw` and finishes it with `outcome`. */
async function finishNext(raw: RawWorker, outcome: "success" | "failure"): Promise<string> {
  raw.send({ case: "credits", value: { count: 1 } });
  const lease = await raw.next("lease");
  raw.send({
    case: "finish",
    value: {
      taskId: lease.taskId,
      leaseToken: lease.leaseToken,
      outcome: outcome === "success" ? { case: "success", value: {} } : { case: "failure", value: { error: "boom" } },
    },
  });
  await raw.next("finishAck");
  return lease.taskId;
}

const state = async () =>
  (await h.pool.query("select (select count(*) from taskq.tasks) t, (select count(*) from taskq.history) h, (select count(*) from taskq.audit_log) a")).rows[0];

/** The settings a retry copies, as status() shows them. */
const settings = (t: TaskInfo) => ({
  type: t.type,
  queue: t.queue,
  params: t.params,
  title: t.title,
  priority: t.priority,
  origin: t.origin,
  initiator: t.initiator,
  nodeId: t.nodeId,
  maxAttempts: t.maxAttempts,
  timeoutMs: t.timeoutMs,
  retryDelayMs: t.retryDelayMs,
});

async function failedTask(): Promise<{ handle: TaskHandle; type: string }> {
  const type = freshType("fails");
  const handle = await h.client().dispatch(type, { to: "ops@example.com", n: [1, 2] }, {
    queue: "reports",
    title: "Nightly report",
    priority: 7,
    origin: "system",
    initiator: "cron-host",
    nodeId: "node-4",
    timeoutMs: 90_000,
    maxAttempts: 4,
    retryDelayMs: 1_500,
    backoff: "exponential",
    idempotencyKey: `key-${type}`,
  });
  const raw = h.rawWorker();
  raw.hello([type]);
  await finishNext(raw, "failure");
  await raw.close();
  assert.equal((await handle.status()).status, "failed");
  return { handle, type };
}

test("a FAILED task retried: a fresh task with the same settings, no idempotency key, linked both ways; it runs", async () => {
  const client = h.client();
  const { handle: original, type } = await failedTask();
  const retry = await client.retry(original.id);
  assert.equal(retry.created, true);
  assert.notEqual(retry.id, original.id);

  const before = await original.status();
  const fresh = await retry.status();
  assert.deepEqual(settings(fresh), settings(before));
  assert.equal(fresh.status, "pending");
  assert.equal(fresh.attempts, 0);
  assert.equal(fresh.idempotencyKey, "", "the retry has no idempotency key");
  assert.equal(fresh.error, "");
  assert.deepEqual(fresh.log, []);
  assert.equal(fresh.retryOf, original.id);
  assert.equal(fresh.retriedAs, "");
  assert.equal(before.retriedAs, retry.id);
  assert.equal(before.retryOf, "");
  const { rows } = await h.pool.query("select retry_backoff from taskq.tasks where id = $1", [retry.id]);
  assert.equal(rows[0].retry_backoff, "exponential");

  // Both lists show the links.
  const active = await client.listActive({ type });
  assert.deepEqual(active.tasks.map((t) => [t.id, t.retryOf]), [[retry.id, original.id]]);
  const history = await client.listHistory({ type });
  assert.deepEqual(history.tasks.map((t) => [t.id, t.retriedAs]), [[original.id, retry.id]]);

  // The retry runs, and keeps its link once finished.
  const raw = h.rawWorker();
  raw.hello([type]);
  assert.equal(await finishNext(raw, "success"), retry.id);
  const done = await retry.status();
  assert.equal(done.status, "completed");
  assert.equal(done.retryOf, original.id);
});

test("retrying a task again returns its retry, created false; ten at once make one retry and one audit row", async () => {
  const client = h.client();
  const { handle: original, type } = await failedTask();
  const audits = async () => (await h.pool.query("select * from taskq.audit_log where action = 'retry' and params->>'task_id' = $1", [original.id])).rows;
  const handles = await Promise.all(Array.from({ length: 10 }, () => client.retry(original.id)));
  const ids = new Set(handles.map((r) => r.id));
  assert.equal(ids.size, 1, "every call names the same retry");
  assert.equal(handles.filter((r) => r.created).length, 1, "exactly one call created it");
  const again = await original.retry();
  assert.equal(again.created, false);
  assert.equal(again.id, handles[0].id);
  assert.equal((await client.listActive({ type })).tasks.length, 1, "one retry in the queue");
  const rows = await audits();
  assert.equal(rows.length, 1);
  assert.equal(rows[0].actor, "anonymous", "no auth: the actor is anonymous");
  assert.equal(rows[0].affected, 1);
  assert.deepEqual(rows[0].params, { task_id: original.id, retry_id: again.id });
});

test("CANCELED and STUCK tasks are retried; a retry of a retry links to its own original", async () => {
  const client = h.client();
  const canceled = await client.dispatch(freshType("canceled"), { x: 1 });
  await canceled.interrupt("not now");
  const first = await canceled.retry();
  assert.equal((await first.status()).retryOf, canceled.id);

  // A retry canceled in turn is retried again: a chain, each link to the one before.
  await first.interrupt();
  const second = await first.retry();
  assert.equal((await second.status()).retryOf, first.id);
  assert.equal((await first.status()).retriedAs, second.id);
  assert.equal((await canceled.status()).retriedAs, first.id);

  // STUCK: the last attempt's worker is lost.
  const type = freshType("stuck");
  const stuck = await client.dispatch(type, {}, { maxAttempts: 1 });
  const raw = h.rawWorker();
  raw.hello([type], 1);
  await raw.next("lease");
  await raw.close();
  await waitFor("the task to be stuck", async () => (await stuck.status()).status === "stuck");
  const retry = await stuck.retry();
  assert.equal(retry.created, true);
  const fresh = await retry.status();
  assert.equal(fresh.maxAttempts, 1);
  assert.equal(fresh.retryOf, stuck.id);
});

test("active, COMPLETED and unknown tasks are refused with the right codes, and nothing changes", async () => {
  const client = h.client();
  const type = freshType("refused");
  const running = await client.dispatch(type);
  const completed = await client.dispatch(type);
  const raw = h.rawWorker();
  raw.hello([type]);
  raw.send({ case: "credits", value: { count: 2 } });
  const leases = [await raw.next("lease"), await raw.next("lease")];
  const done = leases.find((l) => l.taskId === completed.id)!;
  raw.send({ case: "finish", value: { taskId: done.taskId, leaseToken: done.leaseToken, outcome: { case: "success", value: {} } } });
  await raw.next("finishAck");
  const pending = await client.dispatch(type); // no credit left: it stays pending

  const before = await state();
  const refusal = async (id: string) => {
    const err = (await client.retry(id).then(() => null, (e: unknown) => e)) as TaskqError | null;
    assert.ok(err, `retry of ${id} should be refused`);
    return err;
  };
  const onRunning = await refusal(running.id);
  assert.equal(onRunning.code, Code.FailedPrecondition);
  assert.match(onRunning.message, new RegExp(`task ${running.id} is running; only FAILED, CANCELED or STUCK tasks can be retried`));
  const onPending = await refusal(pending.id);
  assert.equal(onPending.code, Code.FailedPrecondition);
  assert.match(onPending.message, /is pending; only FAILED, CANCELED or STUCK tasks can be retried/);
  const onCompleted = await refusal(completed.id);
  assert.equal(onCompleted.code, Code.FailedPrecondition);
  assert.match(onCompleted.message, /is completed; only FAILED, CANCELED or STUCK tasks can be retried/);
  assert.equal((await refusal("987654321")).code, Code.NotFound);
  assert.equal((await refusal("not-a-number")).code, Code.InvalidArgument);
  assert.deepEqual(await state(), before);
  assert.equal((await completed.status()).retriedAs, "");
});

test("a task whose queue is no longer defined is not retried", async () => {
  const client = h.client();
  const task = await client.dispatch(freshType("gone-queue"));
  await task.interrupt();
  await h.pool.query("update taskq.history set queue = 'retired' where id = $1", [task.id]);
  const before = await state();
  const err = (await task.retry().then(() => null, (e: unknown) => e)) as TaskqError;
  assert.equal(err.code, Code.FailedPrecondition);
  assert.match(err.message, /queue "retired", which is no longer defined/);
  assert.deepEqual(await state(), before);
});

test("a plain gRPC client retries, and reads the links in Status", async () => {
  const task = await h.client().dispatch(freshType("grpc"));
  await task.interrupt();
  const session = new Http2SessionManager(h.replicas[0].server.url);
  try {
    const rpc = createClient(TaskQueue, createGrpcTransport({ baseUrl: h.replicas[0].server.url, sessionManager: session }));
    const res = await rpc.retry({ taskId: task.id });
    assert.equal(res.created, true);
    const fresh = await rpc.status({ taskId: res.taskId });
    assert.equal(fresh.task?.retryOf, task.id);
    const original = await rpc.status({ taskId: task.id });
    assert.equal(original.task?.retriedAs, res.taskId);
    assert.equal((await rpc.retry({ taskId: task.id })).created, false);
  } finally {
    session.abort();
  }
});
