/**
 * ListWorkers: every connected worker session on any replica, with its hello, its credits, when it was
 * last heard from, and the tasks it runs.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { TaskQueue } from "@taskq/protocol";
import type { WorkerInfo } from "@taskq/sdk";
import type { Replica } from "../packages/server/src/app.js";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
let a: Replica;
let b: Replica;
before(async () => {
  h = await Harness.create();
  // Short liveness timings: each replica heartbeats its sessions every 160 ms.
  a = await h.replica({ staleCheckMs: 2_000 });
  b = await h.replica({ staleCheckMs: 2_000 });
});
after(() => h.close());

/** The application's workers (each replica also holds a session of its own maintenance worker). */
const listed = async (replica = a): Promise<WorkerInfo[]> => (await h.client(replica).listWorkers()).filter((w) => w.name !== "taskq-server");

test("workers on every replica, with their hello, credits, last message and running tasks", async () => {
  const sdkWorker = h.worker({ name: "sdk-worker", concurrency: 3, queues: ["default"] }, a);
  sdkWorker.register("workers.sdk", () => "done");
  await sdkWorker.start();

  const raw = h.rawWorker(b);
  raw.send({ case: "hello", value: { workerName: "raw-worker", concurrency: 5, taskTypes: [{ name: "workers.raw" }, { name: "workers.other" }] } });
  raw.send({ case: "credits", value: { count: 2 } });
  await raw.next("welcome");
  const { id } = await h.client(b).dispatch("workers.raw", {});
  const lease = await raw.next("lease");
  assert.equal(lease.taskId, id);
  const sentAt = Date.now();

  // Credits and the last message are written by each replica's next heartbeat of its sessions.
  const workers = await waitFor("both workers, recorded by a heartbeat", async () => {
    const ws = await listed();
    return ws.length === 2 && ws.every((w) => w.lastHeardAt !== null) && ws.find((w) => w.name === "raw-worker")?.credits === 1 ? ws : null;
  });
  const [first, second] = workers;
  assert.equal(first.name, "sdk-worker", "oldest connection first");
  assert.equal(first.replicaId, a.engine.replicaId);
  assert.deepEqual(first.taskTypes.filter((t) => !t.startsWith("taskq.")), ["workers.sdk"]);
  assert.deepEqual(first.queues, ["default"]);
  assert.equal(first.concurrency, 3);
  assert.equal(first.running, 0);
  assert.deepEqual(first.runningTaskIds, []);

  assert.equal(second.name, "raw-worker");
  assert.equal(second.replicaId, b.engine.replicaId);
  assert.deepEqual(second.taskTypes, ["workers.raw", "workers.other"]);
  assert.deepEqual(second.queues, []);
  assert.equal(second.concurrency, 5);
  assert.equal(second.credits, 1, "two granted, one used by the lease");
  assert.equal(second.running, 1);
  assert.deepEqual(second.runningTaskIds, [id]);
  assert.ok(second.connectedAt.getTime() <= second.heartbeatAt.getTime());
  assert.ok(second.lastHeardAt && second.lastHeardAt.getTime() >= sentAt - 5_000);

  // The same list from the other replica, and from a plain gRPC client.
  assert.deepEqual((await listed(b)).map((w) => w.sessionId), workers.map((w) => w.sessionId));
  const h2 = new Http2SessionManager(a.server.url);
  try {
    const plain = await createClient(TaskQueue, createGrpcTransport({ baseUrl: a.server.url, sessionManager: h2 })).listWorkers({});
    assert.ok(plain.workers.some((w) => w.sessionId === second.sessionId && w.runningTaskIds[0] === id));
  } finally {
    h2.abort();
  }

  raw.send({ case: "finish", value: { taskId: id, leaseToken: lease.leaseToken, outcome: { case: "success", value: {} } } });
  await raw.next("finishAck");
  await raw.close();
  await waitFor("the raw worker gone from the list", async () => !(await listed()).some((w) => w.name === "raw-worker"));
});
