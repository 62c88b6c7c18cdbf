/**
 * Limits: sizes and counts past which requests and worker messages are refused with a clear error, and
 * workers that misbehave (never reading, flooding) cannot hold up the others.
 * (Finishing another worker's task or replaying an old lease token: fencing.test.ts.)
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setMaxListeners } from "node:events";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Replica } from "../packages/server/src/app.js";
import { LIMITS } from "../packages/server/src/rpc/validate.js";
import { connect } from "@taskq/sdk";
import { AsyncQueue } from "@taskq/protocol";
import { TaskQueue } from "@taskq/protocol";
import { RejectReason, WorkerMessageSchema, WorkerService, type WorkerMessage } from "@taskq/protocol";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
let replica: Replica;
before(async () => {
  h = await Harness.create();
  replica = await h.replica();
});
after(() => h.close());

test("a worker's messages past the limits are refused in-band; the stream and the task go on", async () => {
  const { id } = await h.client().dispatch("limits.a", {}, { maxAttempts: 1 });
  const w = h.rawWorker();
  w.hello(["limits.a"], 1);
  const lease = await w.next("lease");
  const fence = { taskId: id, leaseToken: lease.leaseToken };
  const status = (key: string, value: string | number) =>
    w.send({ case: "statusValue", value: { ...fence, key, value: { kind: typeof value === "number" ? { case: "numberValue", value } : { case: "stringValue", value } } } });

  const overLimit = async (reason: RegExp) => {
    const rejected = await w.next("updateRejected");
    assert.match(rejected.reason, reason);
    assert.equal(rejected.code, RejectReason.LIMIT);
  };
  w.send({ case: "logStep", value: { ...fence, message: "x".repeat(LIMITS.logMessageLength + 1) } });
  await overLimit(/^message: longer than 65536 characters$/);
  status("big", "v".repeat(LIMITS.statusValueBytes));
  await overLimit(/^value: \d+ bytes, larger than the limit of 65536$/);
  status("k".repeat(201), 1);
  await overLimit(/^key: longer than 200 characters$/);

  for (let i = 0; i < LIMITS.statusValueKeys; i++) status(`key${i}`, i);
  status("one-too-many", 1);
  await overLimit(/at most 100 keys$/);
  status("key7", 700); // an existing key may always be set again
  w.send({ case: "logStep", value: { ...fence, message: "still going" } });
  await waitFor("the last log step", async () => (await h.client().status(id)).log.length === 1);
  const task = await h.client().status(id);
  assert.equal(Object.keys(task.statusValues).length, 100);
  assert.equal(task.statusValues.key7, 700);
  assert.equal(task.statusValues["one-too-many"], undefined);

  // A result too large to keep fails the attempt with the reason instead of leaving the task running
  // (this task has one attempt, so it ends FAILED; rpc-result-size.test.ts retries one with more).
  w.send({ case: "finish", value: { ...fence, outcome: { case: "success", value: { result: { kind: { case: "stringValue", value: "r".repeat(LIMITS.resultBytes) } } } } } });
  const ack = await w.next("finishAck");
  assert.equal(ack.status, 5 /* FAILED */);
  assert.match(ack.error, /^the worker's finish was refused: result: \d+ bytes, larger than the limit of 1048576$/);
  const failed = await h.client().status(id);
  assert.equal(failed.status, "failed");
  assert.equal(failed.error, ack.error);
});

test("a message larger than the server takes is RESOURCE_EXHAUSTED and writes nothing", async () => {
  const before = await h.count("tasks");
  const err = await h
    .rpc()
    .dispatch({ type: "limits.huge", params: { blob: "b".repeat(5 * 1024 * 1024) } })
    .then(() => null, (e: unknown) => e);
  assert.ok(err instanceof ConnectError);
  assert.equal(err.code, Code.ResourceExhausted);
  assert.equal(await h.count("tasks"), before);
});

test("one connection may hold at most 100 watch streams; another connection may still watch", async () => {
  const { id } = await h.client().dispatch("limits.watched");
  const conn = connect({ url: replica.server.url });
  const rpc = createClient(TaskQueue, conn.transport);
  const abort = new AbortController();
  setMaxListeners(LIMITS.watchersPerConnection, abort.signal); // one signal ends all 100 streams
  const streams = Array.from({ length: LIMITS.watchersPerConnection }, () => rpc.watchTask({ taskId: id }, { signal: abort.signal })[Symbol.asyncIterator]());
  for (const s of streams) assert.equal((await s.next()).value?.event.case, "snapshot");
  assert.equal(replica.engine.watcherCount, LIMITS.watchersPerConnection);

  const extra = await rpc.watchTask({ taskId: id })[Symbol.asyncIterator]().next().then(() => null, (e: unknown) => e);
  assert.ok(extra instanceof ConnectError);
  assert.equal(extra.code, Code.ResourceExhausted);
  assert.match(extra.rawMessage, /at most 100 WatchTask streams per connection/);

  const other = h.rpc();
  const first = await other.watchTask({ taskId: id })[Symbol.asyncIterator]().next();
  assert.equal(first.value?.event.case, "snapshot");

  abort.abort();
  await waitFor("the watchers to close", () => replica.engine.watcherCount <= 1);
  // The slots are given back: the connection may watch again.
  const again = await rpc.watchTask({ taskId: id })[Symbol.asyncIterator]().next();
  assert.equal(again.value?.event.case, "snapshot");
  conn.close();
});

test("a worker that floods the server and never reads its replies does not hold up other workers", async () => {
  const conn = connect({ url: replica.server.url });
  const outbox = new AsyncQueue<WorkerMessage>();
  const send = (message: MessageInitShape<typeof WorkerMessageSchema>["message"]) => outbox.push(create(WorkerMessageSchema, { message }));
  const replies = createClient(WorkerService, conn.transport).connect(outbox)[Symbol.asyncIterator]();
  send({ case: "hello", value: { workerName: "hostile", taskTypes: [{ name: "limits.hostile" }] } });
  assert.equal((await replies.next()).value?.message.case, "welcome");
  // Thousands of finishes for leases it does not hold, each answered with a refusal it never reads.
  const bogus = { taskId: "1", leaseToken: "00000000-0000-0000-0000-000000000000", outcome: { case: "failure" as const, value: { error: "e" } } };
  for (let i = 0; i < 20_000; i++) send({ case: "finish", value: bogus });
  for (let i = 0; i < 2_000; i++) send({ case: "logStep", value: { taskId: "1", leaseToken: bogus.leaseToken, message: "spam" } });

  const worker = h.worker({ concurrency: 4 });
  worker.register("limits.good", (ctx) => ctx.params.n ?? null);
  await worker.start();
  const handles = await h.client().dispatchBatch(Array.from({ length: 40 }, (_, n) => ({ type: "limits.good", params: { n } })));
  const results = await Promise.all(handles.map((t) => t.result()));
  assert.deepEqual(results, handles.map((_, n) => n));
  // Once the replies it never reads pile up, the server stops reading the flood: wait until the sender's
  // queue stops shrinking, then most of the flood must still be on the sender's side.
  for (let last = -1; last !== outbox.length; ) {
    last = outbox.length;
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(outbox.length > 10_000, `the server read the flood on: ${outbox.length} of 22000 messages left unsent`);

  outbox.close();
  conn.close();
});
