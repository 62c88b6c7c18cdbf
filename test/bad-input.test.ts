/** Bad input: every RPC refuses malformed requests with the right code, naming the field, writing nothing. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HelloSchema } from "@taskq/protocol";
import { TaskStatus } from "@taskq/protocol";
import type { ActiveSortField, Origin, RetryBackoff, TaskQueue } from "@taskq/protocol";
import { Harness } from "./helpers.js";

let h: Harness;
let rpc: Client<typeof TaskQueue>;
let finishedId: string;

before(async () => {
  h = await Harness.create();
  await h.replica();
  rpc = h.rpc();
  const { taskId } = await rpc.dispatch({ type: "setup" });
  await rpc.interrupt({ taskId });
  finishedId = taskId;
});
after(() => h.close());

const state = async () =>
  (await h.pool.query("select (select count(*) from taskq.tasks) t, (select count(*) from taskq.history) h, (select count(*) from taskq.idempotency_keys) k, (select count(*) from taskq.task_log) l")).rows[0];

type Case = [name: string, call: () => Promise<unknown>, code: Code, message: RegExp];

const huge = "x".repeat(1024 * 1024 + 1);
const cases = (): Case[] => [
  ["Dispatch without a type", () => rpc.dispatch({}), Code.InvalidArgument, /^type: required/],
  ["Dispatch with a type holding spaces", () => rpc.dispatch({ type: "two words" }), Code.InvalidArgument, /^type:/],
  ["Dispatch with a type too long", () => rpc.dispatch({ type: "t".repeat(201) }), Code.InvalidArgument, /^type: longer/],
  ["Dispatch to an undefined queue", () => rpc.dispatch({ type: "a", queue: "video" }), Code.InvalidArgument, /queue "video" is not defined \(defined: default, scheduled\)/],
  ["Dispatch with a title too long", () => rpc.dispatch({ type: "a", title: "t".repeat(501) }), Code.InvalidArgument, /^title:/],
  ["Dispatch with an unknown origin", () => rpc.dispatch({ type: "a", origin: 9 as Origin }), Code.InvalidArgument, /^origin: unknown value 9/],
  ["Dispatch with an unknown backoff", () => rpc.dispatch({ type: "a", retryBackoff: 7 as RetryBackoff }), Code.InvalidArgument, /^retry_backoff:/],
  ["Dispatch with max_attempts 0", () => rpc.dispatch({ type: "a", maxAttempts: 0 }), Code.InvalidArgument, /^max_attempts:/],
  ["Dispatch with max_attempts 5000", () => rpc.dispatch({ type: "a", maxAttempts: 5000 }), Code.InvalidArgument, /^max_attempts:/],
  ["Dispatch with a zero timeout", () => rpc.dispatch({ type: "a", timeout: durationFromMs(0) }), Code.InvalidArgument, /^timeout:/],
  ["Dispatch with a negative retry delay", () => rpc.dispatch({ type: "a", retryDelay: durationFromMs(-5) }), Code.InvalidArgument, /^retry_delay:/],
  ["Dispatch with a broken duration", () => rpc.dispatch({ type: "a", retryDelay: { seconds: 1n, nanos: -5 } }), Code.InvalidArgument, /^retry_delay: not a valid/],
  ["Dispatch with a 30-day delay", () => rpc.dispatch({ type: "a", delay: durationFromMs(30 * 86_400_000) }), Code.InvalidArgument, /^delay:/],
  ["Dispatch with delay and run_at", () => rpc.dispatch({ type: "a", delay: durationFromMs(5), runAt: timestampFromDate(new Date()) }), Code.InvalidArgument, /^run_at: set delay or run_at/],
  ["Dispatch with a broken run_at", () => rpc.dispatch({ type: "a", runAt: { seconds: 1n, nanos: -1 } }), Code.InvalidArgument, /^run_at:/],
  ["Dispatch with params over 1 MiB", () => rpc.dispatch({ type: "a", params: { blob: huge } }), Code.InvalidArgument, /^params: larger/],
  ["Dispatch with an idempotency key too long", () => rpc.dispatch({ type: "a", idempotencyKey: "k".repeat(201) }), Code.InvalidArgument, /^idempotency_key:/],
  ["DispatchBatch with no tasks", () => rpc.dispatchBatch({ tasks: [] }), Code.InvalidArgument, /^tasks: at least one/],
  ["DispatchBatch with 1001 tasks", () => rpc.dispatchBatch({ tasks: Array.from({ length: 1001 }, () => ({ type: "a" })) }), Code.InvalidArgument, /^tasks: at most 1000/],
  ["DispatchBatch with one bad task", () => rpc.dispatchBatch({ tasks: [{ type: "a" }, { type: "" }, { type: "c" }] }), Code.InvalidArgument, /^tasks\[1\]\.type: required/],
  ["DispatchBatch with one undefined queue", () => rpc.dispatchBatch({ tasks: [{ type: "a" }, { type: "b", queue: "nope" }] }), Code.InvalidArgument, /^tasks\[1\]\.queue: queue "nope"/],
  ["Status without an id", () => rpc.status({}), Code.InvalidArgument, /^task_id:/],
  ["Status with a word for an id", () => rpc.status({ taskId: "abc" }), Code.InvalidArgument, /^task_id:/],
  ["Status with a negative id", () => rpc.status({ taskId: "-1" }), Code.InvalidArgument, /^task_id:/],
  ["Status with an id past int8", () => rpc.status({ taskId: "99999999999999999999" }), Code.InvalidArgument, /^task_id:/],
  ["Status of an unknown task", () => rpc.status({ taskId: "424242" }), Code.NotFound, /task 424242 not found/],
  ["WatchTask with a bad id", () => drain(rpc.watchTask({ taskId: "x1" })), Code.InvalidArgument, /^task_id:/],
  ["WatchTask of an unknown task", () => drain(rpc.watchTask({ taskId: "424242" })), Code.NotFound, /not found/],
  ["Interrupt with a bad id", () => rpc.interrupt({ taskId: "1.5" }), Code.InvalidArgument, /^task_id:/],
  ["Interrupt of an unknown task", () => rpc.interrupt({ taskId: "424242" }), Code.NotFound, /not found/],
  ["Interrupt of a finished task", () => rpc.interrupt({ taskId: finishedId }), Code.FailedPrecondition, /already finished as canceled/],
  ["Interrupt with a reason too long", () => rpc.interrupt({ taskId: finishedId, reason: "r".repeat(501) }), Code.InvalidArgument, /^reason:/],
  ["ListActive with page_size 501", () => rpc.listActive({ pageSize: 501 }), Code.InvalidArgument, /^page_size:/],
  ["ListActive with an unknown sort", () => rpc.listActive({ sortBy: 99 as ActiveSortField }), Code.InvalidArgument, /^sort_by:/],
  ["ListActive with a final status", () => rpc.listActive({ statuses: [TaskStatus.COMPLETED] }), Code.InvalidArgument, /^statuses\[0\]:/],
  ["ListActive with a garbage page token", () => rpc.listActive({ pageToken: "%%%" }), Code.InvalidArgument, /^page_token:/],
  ["ListActive with a token of another sort", () => rpc.listActive({ pageToken: token({ sort: "id:asc", value: "1", id: "1" }), sortBy: 7 }), Code.InvalidArgument, /another sort order/],
  ["ListActive with a tampered token", () => rpc.listActive({ pageToken: token({ sort: "created_at:asc", value: "2026-13-45 99:00:00+00", id: "1" }) }), Code.InvalidArgument, /./],
  ["ListActive with a bad id filter", () => rpc.listActive({ id: "x" }), Code.InvalidArgument, /^id:/],
  ["ListHistory with an unknown origin", () => rpc.listHistory({ origin: 5 as Origin }), Code.InvalidArgument, /^origin:/],
  ["ListHistory with a pending status", () => rpc.listHistory({ statuses: [TaskStatus.PENDING] }), Code.InvalidArgument, /^statuses\[0\]:/],
  ["ListHistory with page_size 1000", () => rpc.listHistory({ pageSize: 1000 }), Code.InvalidArgument, /^page_size:/],
  ["ListHistory with a garbage page token", () => rpc.listHistory({ pageToken: token({ createdAt: "yesterday", id: "1" }) }), Code.InvalidArgument, /^page_token:/],
  ["PauseQueue with no queue", () => rpc.pauseQueue({}), Code.InvalidArgument, /^queue:/],
  ["PauseQueue of an undefined queue", () => rpc.pauseQueue({ queue: "video" }), Code.InvalidArgument, /^queue: queue "video" is not defined/],
  ["ResumeQueue with a bad name", () => rpc.resumeQueue({ queue: "no spaces" }), Code.InvalidArgument, /^queue:/],
];

const token = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
async function drain(stream: AsyncIterable<unknown>) {
  for await (const _ of stream) void _;
}

describe("TaskQueue refuses bad requests", () => {
  for (const [name, , code, message] of cases()) {
    test(name, async () => {
      const call = cases().find((c) => c[0] === name)![1];
      const before = await state();
      const err = await call().then(() => null, (e: unknown) => e);
      assert.ok(err instanceof ConnectError, `expected an error, got ${err === null ? "success" : String(err)}`);
      assert.equal(Code[err.code], Code[code], err.rawMessage);
      assert.match(err.rawMessage, message);
      assert.deepEqual(await state(), before, "the refused call wrote something");
    });
  }
});

describe("WorkerService refuses bad streams", () => {
  test("a first message other than hello ends the stream with FAILED_PRECONDITION", async () => {
    const w = h.rawWorker();
    w.send({ case: "credits", value: { count: 1 } });
    const err = (await w.result()) as ConnectError;
    assert.equal(err.code, Code.FailedPrecondition);
  });

  for (const [name, hello, pattern] of [
    ["no task types", { workerName: "w", taskTypes: [] }, /task_types: at least one/],
    ["a bad type name", { workerName: "w", taskTypes: [{ name: "no spaces" }] }, /task_types\[0\]\.name/],
    ["a type declared twice", { workerName: "w", taskTypes: [{ name: "a" }, { name: "a" }] }, /declared twice/],
    ["an undefined queue", { workerName: "w", taskTypes: [{ name: "a" }], queues: ["nope"] }, /queue "nope" is not defined/],
    ["a zero type timeout", { workerName: "w", taskTypes: [{ name: "a", timeout: durationFromMs(0) }] }, /timeout/],
  ] as [string, MessageInitShape<typeof HelloSchema>, RegExp][]) {
    test(`a hello with ${name} ends the stream with INVALID_ARGUMENT`, async () => {
      const w = h.rawWorker();
      w.send({ case: "hello", value: hello });
      const err = (await w.result()) as ConnectError;
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.rawMessage, pattern);
      const { rows } = await h.pool.query("select count(*)::int4 as n from taskq.worker_sessions where worker_name <> 'taskq-server'");
      assert.equal(rows[0].n, 0, "no session of the refused worker");
    });
  }

  test("a second hello ends the stream with FAILED_PRECONDITION", async () => {
    const w = h.rawWorker();
    w.hello(["a"]);
    await w.next("welcome");
    w.hello(["a"]);
    const err = (await w.result()) as ConnectError;
    assert.equal(err.code, Code.FailedPrecondition);
  });

  test("messages about unknown tasks or malformed tokens are refused in-band; the stream goes on", async () => {
    const w = h.rawWorker();
    w.hello(["a"]);
    await w.next("welcome");
    const before = await state();
    w.send({ case: "finish", value: { taskId: "1", leaseToken: "not-a-token", outcome: { case: "success", value: {} } } });
    assert.match((await w.next("finishRejected")).reason, /lease_token/);
    w.send({ case: "finish", value: { taskId: "abc", leaseToken: "", outcome: { case: "failure", value: { error: "e" } } } });
    assert.match((await w.next("finishRejected")).reason, /task_id/);
    w.send({ case: "finish", value: { taskId: "77", leaseToken: "00000000-0000-0000-0000-000000000000" } });
    assert.match((await w.next("finishRejected")).reason, /does not hold|outcome/);
    w.send({ case: "logStep", value: { taskId: "77", leaseToken: "00000000-0000-0000-0000-000000000000", message: "hi" } });
    await w.next("updateRejected");
    w.send({ case: "statusValue", value: { taskId: "77", leaseToken: "00000000-0000-0000-0000-000000000000", key: "" } });
    await w.next("updateRejected");
    w.send({ case: "heartbeat", value: {} });
    assert.deepEqual(await state(), before);
    await w.close();
    assert.equal(await w.result(), "ended", "the stream ended cleanly after the refusals");
  });
});
