/**
 * InterruptMany and RetryMany: a filter, a dry run that only counts, a limit per call with more_remain,
 * batches of 500 tasks each in its own transaction, the cancel reaching a running task's worker, and
 * refusals of statuses the action cannot take.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CancelReason } from "@taskq/protocol";
import { Code, type TaskClient, type TaskqError } from "@taskq/sdk";
import { Harness } from "./helpers.js";

let h: Harness;
let client: TaskClient;
before(async () => {
  h = await Harness.create();
  await h.replica({ queues: { reports: {} } });
  client = h.client();
});
after(() => h.close());

let typeSeq = 0;
/** A task type no other test uses: each test's filter names its own. */
const freshType = (name: string) => `bulk.${name}.${++typeSeq}`;

async function dispatchMany(type: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < n; start += 1000) {
    const handles = await client.dispatchBatch(Array.from({ length: Math.min(1000, n - start) }, (_, i) => ({ type, params: { i: start + i } })));
    ids.push(...handles.map((t) => t.id));
  }
  return ids;
}

const state = async () =>
  (await h.pool.query("select (select count(*) from taskq.tasks) t, (select count(*) from taskq.history) h, (select count(*) from taskq.audit_log) a")).rows[0];

/** How many transactions wrote the current versions of `table`'s rows of this type. */
const transactions = async (table: "tasks" | "history", type: string) =>
  (await h.pool.query(`select count(distinct xmin::text)::int4 as n from taskq.${table} where type = $1`, [type])).rows[0].n;

const auditOf = async (action: string, type: string) =>
  (await h.pool.query("select * from taskq.audit_log where action = $1 and params->'filter'->>'type' = $2", [action, type])).rows;

test("a dry run counts what would be done, up to the limit, and changes nothing", async () => {
  const type = freshType("dry");
  await dispatchMany(type, 5);
  const before = await state();
  assert.deepEqual(await client.interruptMany({ type }, { dryRun: true }), { count: 5, moreRemain: false });
  assert.deepEqual(await client.interruptMany({ type }, { dryRun: true, limit: 3 }), { count: 3, moreRemain: true });
  assert.deepEqual(await client.interruptMany({ type, statuses: ["running"] }, { dryRun: true }), { count: 0, moreRemain: false });
  assert.deepEqual(await client.retryMany({ type }, { dryRun: true }), { count: 0, moreRemain: false });
  assert.deepEqual(await state(), before);

  await client.interruptMany({ type }, { limit: 2 });
  const afterTwo = await state();
  assert.deepEqual(await client.retryMany({ type }, { dryRun: true }), { count: 2, moreRemain: false });
  assert.deepEqual(await client.retryMany({ type, statuses: ["failed", "stuck"] }, { dryRun: true }), { count: 0, moreRemain: false });
  assert.deepEqual(await state(), afterTwo);
});

test("1,200 tasks interrupted, then retried, in batches of 500 (three transactions each), with one audit row per call", async () => {
  const type = freshType("big");
  const ids = await dispatchMany(type, 1200);
  assert.deepEqual(await client.interruptMany({ type }, { reason: "cleanup" }), { count: 1200, moreRemain: false });
  const { rows: archived } = await h.pool.query("select status, error, count(*)::int4 as n from taskq.history where type = $1 group by 1, 2", [type]);
  assert.deepEqual(archived, [{ status: "canceled", error: "interrupted: cleanup", n: 1200 }]);
  assert.equal(await transactions("history", type), 3, "500 + 500 + 200, each its own transaction");
  const [interrupted] = await auditOf("interrupt_many", type);
  assert.equal(interrupted.affected, 1200);
  assert.equal(interrupted.actor, "anonymous");
  assert.deepEqual(interrupted.params, { filter: { type }, limit: 10_000, reason: "cleanup" });
  assert.equal((await auditOf("interrupt_many", type)).length, 1);

  assert.deepEqual(await client.retryMany({ type }, { dryRun: true }), { count: 1200, moreRemain: false });
  assert.deepEqual(await client.retryMany({ type, statuses: ["canceled"] }), { count: 1200, moreRemain: false });
  const { rows: links } = await h.pool.query(
    `select count(*)::int4 as n, count(distinct t.id)::int4 as retries, bool_and(t.status = 'pending' and t.params = h.params) as same
     from taskq.history h join taskq.tasks t on t.id = h.retried_as and t.retry_of = h.id where h.type = $1`,
    [type],
  );
  assert.deepEqual(links[0], { n: 1200, retries: 1200, same: true });
  assert.equal(await transactions("tasks", type), 3);
  assert.equal((await h.pool.query("select count(*)::int4 as n from taskq.history where id = any($1::int8[]) and retried_as is not null", [ids])).rows[0].n, 1200);
  const [retried] = await auditOf("retry_many", type);
  assert.equal(retried.affected, 1200);
  assert.deepEqual(retried.params, { filter: { type, statuses: ["canceled"] }, limit: 10_000 });

  // Nothing left to retry: no change, and no audit row for it.
  assert.deepEqual(await client.retryMany({ type }), { count: 0, moreRemain: false });
  assert.equal((await auditOf("retry_many", type)).length, 1);
  await client.interruptMany({ type }); // the retries, so that no worker ever sees them
});

test("limit bounds each call, oldest first, and more_remain says when to call again", async () => {
  const type = freshType("limit");
  const ids = await dispatchMany(type, 25);
  assert.deepEqual(await client.interruptMany({ type }, { limit: 10 }), { count: 10, moreRemain: true });
  const canceled = (await h.pool.query("select id::text from taskq.history where type = $1 order by id", [type])).rows.map((r) => r.id);
  assert.deepEqual(canceled, ids.slice(0, 10), "the oldest ten");
  assert.deepEqual(await client.interruptMany({ type }, { limit: 10 }), { count: 10, moreRemain: true });
  assert.deepEqual(await client.interruptMany({ type }, { limit: 10 }), { count: 5, moreRemain: false });
  assert.deepEqual(await client.interruptMany({ type }, { limit: 10 }), { count: 0, moreRemain: false });

  assert.deepEqual(await client.retryMany({ type }, { limit: 20 }), { count: 20, moreRemain: true });
  assert.deepEqual(await client.retryMany({ type }, { limit: 20 }), { count: 5, moreRemain: false });
  assert.equal((await auditOf("interrupt_many", type)).length, 3, "three calls changed something");
  await client.interruptMany({ type });
});

test("InterruptMany cancels pending tasks and reaches a running task's worker, as Interrupt does", async () => {
  const type = freshType("running");
  const raw = h.rawWorker();
  raw.hello([type], 1);
  const running = await client.dispatch(type);
  const lease = await raw.next("lease");
  assert.equal(lease.taskId, running.id);
  const pending = await client.dispatch(type); // no credit left: it waits

  assert.deepEqual(await client.interruptMany({ type, statuses: ["pending"] }, { reason: "drain" }), { count: 1, moreRemain: false });
  assert.equal((await pending.status()).status, "canceled");
  assert.equal((await running.status()).status, "running", "a pending-only filter leaves the running task alone");

  assert.deepEqual(await client.interruptMany({ type, statuses: ["running"] }, { reason: "drain" }), { count: 1, moreRemain: false });
  const cancel = await raw.next("cancel");
  assert.equal(cancel.taskId, running.id);
  assert.equal(cancel.leaseToken, lease.leaseToken);
  assert.equal(cancel.reason, CancelReason.INTERRUPTED);
  const cancelling = await running.status();
  assert.equal(cancelling.status, "cancelling");
  assert.ok(cancelling.deadline, "a cancelling task shows when its grace period ends");
  assert.deepEqual(await client.interruptMany({ type }), { count: 0, moreRemain: false }, "a cancelling task is interrupted already");

  raw.send({ case: "finish", value: { taskId: running.id, leaseToken: lease.leaseToken, outcome: { case: "success", value: {} } } });
  await raw.next("finishAck");
  const ended = await running.status();
  assert.equal(ended.status, "canceled");
  assert.equal(ended.error, "interrupted: drain");
});

test("the filter's queue, origin and created range each narrow what is matched", async () => {
  const type = freshType("filter");
  const tasks = [
    await client.dispatch(type, {}, { queue: "reports" }),
    await client.dispatch(type, {}, { queue: "reports", origin: "system" }),
    await client.dispatch(type),
    await client.dispatch(type, {}, { origin: "system" }),
  ];
  // Created a minute apart, so the range filters do not depend on how fast the dispatches were.
  const start = Date.parse("2030-01-01T00:00:00Z");
  const minute = (i: number) => new Date(start + i * 60_000);
  for (const [i, t] of tasks.entries()) await h.pool.query("update taskq.tasks set created_at = $2 where id = $1", [t.id, minute(i)]);
  const count = async (filter: Parameters<TaskClient["interruptMany"]>[0]) => (await client.interruptMany({ type, ...filter }, { dryRun: true })).count;
  assert.equal(await count({}), 4);
  assert.equal(await count({ queue: "reports" }), 2);
  assert.equal(await count({ queue: "default" }), 2);
  assert.equal(await count({ origin: "system" }), 2);
  assert.equal(await count({ origin: "user", queue: "reports" }), 1);
  assert.equal(await count({ createdAfter: minute(2) }), 2, "created at or after");
  assert.equal(await count({ createdBefore: minute(1) }), 1, "created before");
  assert.equal(await count({ createdAfter: minute(1), createdBefore: minute(3), origin: "system" }), 1);

  assert.deepEqual(await client.interruptMany({ type, queue: "reports", origin: "system" }), { count: 1, moreRemain: false });
  assert.deepEqual(await client.retryMany({ type, origin: "user" }, { dryRun: true }), { count: 0, moreRemain: false });
  assert.deepEqual(await client.retryMany({ type, origin: "system" }), { count: 1, moreRemain: false });
  await client.interruptMany({ type });
});

test("statuses the action cannot take, an empty filter and a limit over 10,000 are INVALID_ARGUMENT, and nothing changes", async () => {
  const type = freshType("refused");
  await dispatchMany(type, 3);
  const before = await state();
  const refusal = async (call: () => Promise<unknown>, message: RegExp) => {
    const err = (await call().then(() => null, (e: unknown) => e)) as TaskqError | null;
    assert.ok(err, `expected a refusal matching ${message}`);
    assert.equal(err.code, Code.InvalidArgument, err.message);
    assert.match(err.message, message);
  };
  await refusal(() => client.interruptMany({ type, statuses: ["completed"] }), /filter\.statuses\[0\]: COMPLETED is not allowed here \(allowed: PENDING, RUNNING\)/);
  await refusal(() => client.interruptMany({ type, statuses: ["pending", "cancelling"] }), /filter\.statuses\[1\]: CANCELLING is not allowed here/);
  await refusal(() => client.retryMany({ type, statuses: ["pending"] }), /filter\.statuses\[0\]: PENDING is not allowed here \(allowed: FAILED, CANCELED, STUCK\)/);
  await refusal(() => client.retryMany({ type, statuses: ["completed"] }), /COMPLETED is not allowed here/);
  await refusal(() => client.interruptMany({}), /filter: set at least one field/);
  await refusal(() => client.retryMany({}, { dryRun: true }), /filter: set at least one field/);
  await refusal(() => client.interruptMany({ type }, { limit: 10_001 }), /limit: at most 10000/);
  await refusal(() => client.interruptMany({ type, queue: "no such/queue!" }), /filter\.queue:/);
  await refusal(() => client.retryMany({ type, statuses: ["sleeping" as "failed"] }), /statuses\[0\]: "sleeping" is not a status/);
  // The raw API: no filter at all is the empty filter.
  await refusal(() => h.rpc().interruptMany({}), /filter: set at least one field/);
  assert.deepEqual(await state(), before);
  await client.interruptMany({ type });
});
