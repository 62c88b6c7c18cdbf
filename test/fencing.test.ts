/** Fencing: a message carrying a stale lease token is refused and changes nothing. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { taskFinishMany } from "../packages/server/src/engine/sql/lease.js";
import { TaskStatus } from "@taskq/protocol";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica();
});
after(() => h.close());

const taskRow = async (id: string) => (await h.pool.query("select * from taskq.tasks where id = $1", [id])).rows[0];

test("a finish with a stale lease token is rejected and changes nothing", async () => {
  const client = h.client();
  const { id } = await client.dispatch("fenced", { n: 1 });

  const a = h.rawWorker();
  a.hello(["fenced"], 1);
  const first = await a.next("lease");
  assert.equal(first.taskId, id);
  assert.equal(first.attempt, 1);
  await a.close(); // the stream ends: the lease goes back to the queue
  await waitFor("the lease to be released", async () => (await taskRow(id))?.status === "pending");

  const b = h.rawWorker();
  b.hello(["fenced"], 1);
  const second = await b.next("lease");
  assert.equal(second.taskId, id);
  assert.equal(second.attempt, 2);
  assert.notEqual(second.leaseToken, first.leaseToken);
  const before = await taskRow(id);

  // The old token, from the session now holding the task: refused in-band, the stream goes on.
  b.send({ case: "finish", value: { taskId: id, leaseToken: first.leaseToken, outcome: { case: "success", value: {} } } });
  const rejected = await b.next("finishRejected");
  assert.equal(rejected.leaseToken, first.leaseToken);
  b.send({ case: "logStep", value: { taskId: id, leaseToken: first.leaseToken, message: "from the past" } });
  await b.next("updateRejected");
  assert.deepEqual(await taskRow(id), before);
  assert.equal(await h.count("task_log"), 0);

  // The database itself refuses the stale token, whoever asks.
  const direct = await taskFinishMany(h.pool, [{ id, leaseToken: first.leaseToken, outcome: { kind: "failure", error: "x" } }], new Date());
  assert.equal(direct.size, 0);
  assert.deepEqual(await taskRow(id), before);

  // The current token finishes the task; finishing it again is refused and changes nothing.
  b.send({ case: "finish", value: { taskId: id, leaseToken: second.leaseToken, outcome: { case: "success", value: {} } } });
  const ack = await b.next("finishAck");
  assert.equal(ack.status, TaskStatus.COMPLETED);
  const history = (await h.pool.query("select * from taskq.history where id = $1", [id])).rows[0];
  b.send({ case: "finish", value: { taskId: id, leaseToken: second.leaseToken, outcome: { case: "failure", value: { error: "late" } } } });
  await b.next("finishRejected");
  assert.deepEqual((await h.pool.query("select * from taskq.history where id = $1", [id])).rows[0], history);
  assert.equal((await client.status(id)).status, "completed");
});

test("a worker cannot finish or log a task another worker holds", async () => {
  const client = h.client();
  const { id } = await client.dispatch("held");
  const holder = h.rawWorker();
  holder.hello(["held"], 1);
  const lease = await holder.next("lease");
  const intruder = h.rawWorker();
  intruder.hello(["other"], 0);
  await intruder.next("welcome");
  const before = await taskRow(id);
  intruder.send({ case: "finish", value: { taskId: id, leaseToken: lease.leaseToken, outcome: { case: "success", value: {} } } });
  await intruder.next("finishRejected");
  intruder.send({ case: "statusValue", value: { taskId: id, leaseToken: lease.leaseToken, key: "progress" } });
  await intruder.next("updateRejected");
  assert.deepEqual(await taskRow(id), before);
});
