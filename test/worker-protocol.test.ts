/**
 * The worker protocol's answers to what a worker in a new language may get wrong (docs/worker-protocol.md):
 * no hello, no credits, values that are not JSON, NUL characters, malformed finishes, token case,
 * declined leases, reserved type names, schedules named like the config's, and params too large for a
 * lease. Each is a clear error or an in-band answer, never silence or a broken stream.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { CancelReason, LIMITS, RejectReason, TEMP_CLEANUP_TYPE, TaskStatus } from "@taskq/protocol";
import type { Replica } from "../packages/server/src/app.js";
import { Harness, waitFor, type RawWorker } from "./helpers.js";

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica();
});
after(() => h.close());

/** A raw worker holding a lease of a task of `type` just dispatched. */
async function leased(type: string, opts: { maxAttempts?: number } = {}) {
  const { id } = await h.client().dispatch(type, {}, { maxAttempts: opts.maxAttempts ?? 3, retryDelayMs: 0, backoff: "fixed" });
  const w = h.rawWorker();
  w.hello([type], 1);
  const lease = await w.next("lease");
  assert.equal(lease.taskId, id);
  return { w, id, lease, fence: { taskId: id, leaseToken: lease.leaseToken } };
}

const number = (value: number) => ({ kind: { case: "numberValue" as const, value } });
const string = (value: string) => ({ kind: { case: "stringValue" as const, value } });

async function rejected(w: RawWorker, code: RejectReason, reason: RegExp) {
  const r = await w.next("updateRejected");
  assert.equal(r.code, code, r.reason);
  assert.match(r.reason, reason);
}

describe("opening a stream", () => {
  let quick: Replica;
  before(async () => {
    // A silence limit of 1 s: the stream is asked for a hello within 1 s, and credits within 0.5 s.
    quick = await h.replica({ staleCheckMs: 2_000 });
  });

  test("a stream that sends no hello within the silence limit ends DEADLINE_EXCEEDED, saying so", async () => {
    const w = h.rawWorker(quick);
    const err = await w.result();
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, Code.DeadlineExceeded);
    assert.match(err.rawMessage, /^no hello within 1 s of opening the stream$/);
  });

  test("a hello that never grants credits ends FAILED_PRECONDITION, saying so, although the worker heartbeats", async () => {
    const w = h.rawWorker(quick);
    w.hello(["proto.no-credits"]);
    await w.next("welcome");
    const beat = setInterval(() => w.send({ case: "heartbeat", value: { seq: 0n } }), 100);
    try {
      const err = await w.result();
      assert.ok(err instanceof ConnectError, String(err));
      assert.equal(err.code, Code.FailedPrecondition);
      assert.match(err.rawMessage, /^no credits within 0.5 s of the welcome: a stream starts with none; send Credits to receive leases$/);
    } finally {
      clearInterval(beat);
    }
  });

  test("a stream that granted credits is not ended for it", async () => {
    const w = h.rawWorker(quick);
    w.hello(["proto.credited"], 1);
    await w.next("welcome");
    // Heartbeats past the half silence limit, then a lease still arrives on the same stream.
    for (let i = 0; i < 8; i++) {
      w.send({ case: "heartbeat", value: { seq: BigInt(i + 1) } });
      await w.next("heartbeatAck");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const { id } = await h.client(quick).dispatch("proto.credited", {});
    const lease = await w.next("lease");
    assert.equal(lease.taskId, id);
    w.send({ case: "finish", value: { taskId: id, leaseToken: lease.leaseToken, outcome: { case: "success", value: {} } } });
    assert.equal((await w.next("finishAck")).status, TaskStatus.COMPLETED);
  });

  test("a hello may not declare the server's own task types, except the temp-dir cleanup", async () => {
    const w = h.rawWorker();
    w.hello(["proto.mine", "taskq.history-retention"], 1);
    const err = await w.result();
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /^hello\.task_types\[1\]\.name: "taskq\.history-retention": names starting with "taskq\." are the server's own/);

    const ok = h.rawWorker();
    ok.hello(["proto.mine", TEMP_CLEANUP_TYPE], 1);
    await ok.next("welcome");
  });
});

describe("updates that cannot be stored are refused in-band, and the stream goes on", () => {
  test("status values that are not JSON or hold NUL, keys that are empty or hold NUL, log steps with NUL: INVALID", async () => {
    const { w, id, fence } = await leased("proto.invalid-updates");
    const status = (key: string, value: object) => w.send({ case: "statusValue", value: { ...fence, key, value } });

    status("nan", number(Number.NaN));
    await rejected(w, RejectReason.INVALID, /^value: not JSON/);
    status("infinite", number(Number.POSITIVE_INFINITY));
    await rejected(w, RejectReason.INVALID, /^value: not JSON/);
    status("no-kind", {});
    await rejected(w, RejectReason.INVALID, /^value: not JSON/);
    status("nested", { kind: { case: "listValue", value: { values: [number(1), number(Number.NaN)] } } });
    await rejected(w, RejectReason.INVALID, /^value: not JSON/);
    status("nul", string("a\0b"));
    await rejected(w, RejectReason.INVALID, /^value: holds a NUL character/);
    status("", number(1));
    await rejected(w, RejectReason.INVALID, /^key: required$/);
    status("k\0", number(1));
    await rejected(w, RejectReason.INVALID, /^key: holds a NUL character/);
    w.send({ case: "logStep", value: { ...fence, message: "before\0after" } });
    await rejected(w, RejectReason.INVALID, /^message: holds a NUL character/);

    // What only looks like a NUL is stored as sent: a backslash and "u0000", and the text "\0".
    status("escaped", string("\\u0000 and \\\\u0000"));
    w.send({ case: "logStep", value: { ...fence, message: "\\0 is fine" } });
    w.send({ case: "finish", value: { ...fence, outcome: { case: "success", value: { result: string("done") } } } });
    assert.equal((await w.next("finishAck")).status, TaskStatus.COMPLETED);
    const task = await h.client().status(id);
    assert.deepEqual(task.statusValues, { escaped: "\\u0000 and \\\\u0000" });
    assert.deepEqual(
      task.log.map((s) => s.message),
      ["\\0 is fine"],
    );
  });

  test("ids that cannot name a lease are INVALID; a lease the session does not hold is NOT_HELD", async () => {
    const { w, fence } = await leased("proto.fences");
    w.send({ case: "logStep", value: { taskId: "not-a-number", leaseToken: fence.leaseToken, message: "x" } });
    await rejected(w, RejectReason.INVALID, /^task_id: /);
    w.send({ case: "logStep", value: { ...fence, leaseToken: "nope", message: "x" } });
    await rejected(w, RejectReason.INVALID, /^lease_token: /);
    w.send({ case: "logStep", value: { ...fence, leaseToken: "00000000-0000-4000-8000-000000000000", message: "x" } });
    await rejected(w, RejectReason.NOT_HELD, /^this session does not hold that lease$/);

    w.send({ case: "finish", value: { ...fence, taskId: "0", outcome: { case: "success", value: {} } } });
    const bad = await w.next("finishRejected");
    assert.equal(bad.code, RejectReason.INVALID);
    w.send({ case: "finish", value: { ...fence, outcome: { case: "success", value: {} } } });
    assert.equal((await w.next("finishAck")).status, TaskStatus.COMPLETED);
    w.send({ case: "finish", value: { ...fence, outcome: { case: "success", value: {} } } });
    const again = await w.next("finishRejected");
    assert.equal(again.code, RejectReason.NOT_HELD);
  });

  test("a lease token is matched whatever its case", async () => {
    const { w, id, fence } = await leased("proto.token-case");
    const upper = { ...fence, leaseToken: fence.leaseToken.toUpperCase() };
    w.send({ case: "logStep", value: { ...upper, message: "from an upper-case token" } });
    w.send({ case: "finish", value: { ...upper, outcome: { case: "success", value: {} } } });
    const ack = await w.next("finishAck");
    assert.equal(ack.status, TaskStatus.COMPLETED);
    assert.equal(ack.leaseToken, upper.leaseToken, "the ack names the token as the worker sent it");
    assert.deepEqual(
      (await h.client().status(id)).log.map((s) => s.message),
      ["from an upper-case token"],
    );
  });
});

describe("a finish is never refused for what it carries", () => {
  test("a result that is not JSON fails the attempt, saying why in the ack and on the task; the retry policy applies", async () => {
    const { w, id, fence } = await leased("proto.nan-result", { maxAttempts: 2 });
    w.send({ case: "finish", value: { ...fence, outcome: { case: "success", value: { result: number(Number.NaN) } } } });
    const ack = await w.next("finishAck");
    assert.equal(ack.status, TaskStatus.PENDING);
    assert.match(ack.error, /^the worker's finish was refused: result: value: not JSON/);
    const task = await h.client().status(id);
    assert.equal(task.status, "pending");
    assert.equal(task.error, ack.error);

    w.send({ case: "credits", value: { count: 1 } });
    const second = await w.next("lease");
    assert.equal(second.attempt, 2);
    w.send({ case: "finish", value: { taskId: id, leaseToken: second.leaseToken, outcome: { case: "success", value: { result: string("a\0") } } } });
    const last = await w.next("finishAck");
    assert.equal(last.status, TaskStatus.FAILED);
    assert.match(last.error, /^the worker's finish was refused: result: value: holds a NUL character/);
  });

  test("no outcome, or a retry delay out of range, fails the attempt in the same way", async () => {
    const { w, id, fence } = await leased("proto.malformed-finish", { maxAttempts: 3 });
    w.send({ case: "finish", value: { ...fence } });
    const none = await w.next("finishAck");
    assert.equal(none.status, TaskStatus.PENDING);
    assert.match(none.error, /^the worker's finish was refused: outcome: required/);

    w.send({ case: "credits", value: { count: 1 } });
    const second = await w.next("lease");
    const delay = { seconds: -1n, nanos: 0 };
    w.send({ case: "finish", value: { taskId: id, leaseToken: second.leaseToken, outcome: { case: "retry", value: { error: "x", delay } } } });
    const negative = await w.next("finishAck");
    assert.equal(negative.status, TaskStatus.PENDING);
    assert.match(negative.error, /^the worker's finish was refused: retry\.delay: must be between 0 ms and 7 days$/);
  });

  test("a failure's error with NUL characters is kept, each NUL replaced by U+FFFD; an ack for a sound outcome has no error", async () => {
    const { w, id, fence } = await leased("proto.nul-error", { maxAttempts: 1 });
    w.send({ case: "finish", value: { ...fence, outcome: { case: "failure", value: { error: "bad\0byte" } } } });
    const ack = await w.next("finishAck");
    assert.equal(ack.status, TaskStatus.FAILED);
    assert.equal(ack.error, "");
    assert.equal((await h.client().status(id)).error, "bad\uFFFDbyte");
  });
});

describe("declining a lease", () => {
  test("gives the task back at once without counting the attempt; a second decline is NOT_HELD", async () => {
    const { w, id, fence } = await leased("proto.decline", { maxAttempts: 1 });
    w.send({ case: "finish", value: { ...fence, outcome: { case: "decline", value: {} } } });
    assert.equal((await w.next("finishAck")).status, TaskStatus.PENDING);
    const task = await h.client().status(id);
    assert.equal(task.status, "pending");
    assert.equal(task.attempts, 0);

    w.send({ case: "finish", value: { ...fence, outcome: { case: "decline", value: {} } } });
    assert.equal((await w.next("finishRejected")).code, RejectReason.NOT_HELD);

    // Its only attempt is still to come: the next lease is attempt 1 again, and it can complete.
    w.send({ case: "credits", value: { count: 1 } });
    const again = await w.next("lease");
    assert.equal(again.taskId, id);
    assert.equal(again.attempt, 1);
    w.send({ case: "finish", value: { taskId: id, leaseToken: again.leaseToken, outcome: { case: "success", value: {} } } });
    assert.equal((await w.next("finishAck")).status, TaskStatus.COMPLETED);
  });

  test("a task being interrupted ends CANCELED when declined", async () => {
    const { w, id, fence } = await leased("proto.decline-interrupted");
    assert.equal(await h.client().interrupt(id, "stop it"), "cancelling");
    const cancel = await w.next("cancel");
    assert.equal(cancel.taskId, id);
    w.send({ case: "finish", value: { ...fence, outcome: { case: "decline", value: {} } } });
    assert.equal((await w.next("finishAck")).status, TaskStatus.CANCELED);
    assert.equal((await h.client().status(id)).status, "canceled");
  });
});

test("a timed-out lease is no longer held: a shutdown neither waits for it nor cancels it again", async () => {
  const own = await h.replica();
  const { id } = await h.client(own).dispatch("proto.timed-out", {}, { timeoutMs: 100, maxAttempts: 1 });
  const w = h.rawWorker(own);
  w.hello(["proto.timed-out"], 1);
  const lease = await w.next("lease");
  const beat = setInterval(() => w.send({ case: "heartbeat", value: { seq: 0n } }), 100);
  try {
    const cancel = await w.next("cancel");
    assert.deepEqual([cancel.taskId, cancel.leaseToken], [id, lease.leaseToken]);
    await waitFor("the task to be STUCK", async () => (await h.client(own).status(id)).status === "stuck");
    // Stopping with a grace: a lease still held would get cancel(SHUTDOWN) once the grace is over.
    await h.stopReplica(own, { graceMs: 300 });
    const after = await w.nextOf(["cancel"], 1_000).catch((err: Error) => err);
    assert.ok(after instanceof Error, `no second cancel: got ${JSON.stringify(after)}`);
  } finally {
    clearInterval(beat);
  }
});

test("params whose protobuf encoding is over the lease limit are refused at dispatch, though small as JSON", async () => {
  // 300,000 zeros: 600 KB of JSON, 3.3 MB of protobuf (11 bytes each).
  const params = { list: new Array(300_000).fill(0) };
  assert.ok(JSON.stringify(params).length < LIMITS.paramsBytes);
  const err = await h
    .rpc()
    .dispatch({ type: "proto.huge-params", params })
    .then(() => null, (e: unknown) => e);
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(err.code, Code.InvalidArgument);
  assert.match(err.rawMessage, /^params: larger than 3145728 bytes in protobuf encoding$/);
  assert.equal((await h.client().listActive({ type: "proto.huge-params" })).tasks.length, 0);
});

test("params holding a NUL character are INVALID_ARGUMENT, saying so", async () => {
  const err = await h
    .rpc()
    .dispatch({ type: "proto.nul-params", params: { s: "a\0" } })
    .then(() => null, (e: unknown) => e);
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(err.code, Code.InvalidArgument);
  assert.match(err.rawMessage, /^params: holds a NUL character/);
});

test("a worker's schedule never replaces a config schedule of the same name", async () => {
  const config = { name: "proto.report", cron: "0 3 * * *", type: "proto.report-from-config" };
  const own = await h.replica({ schedules: [config] });
  const w = h.rawWorker(own);
  w.send({ case: "hello", value: { workerName: "raw", taskTypes: [{ name: "proto.report", schedule: "*/5 * * * *" }] } });
  w.send({ case: "credits", value: { count: 1 } });
  await w.next("welcome");
  const { rows } = await h.pool.query("select cron, type, source from taskq.schedules where name = 'proto.report'");
  assert.deepEqual(rows, [{ cron: "0 3 * * *", type: "proto.report-from-config", source: "config" }]);
});

test("a shutdown ends the stream UNAVAILABLE, saying so, after the cancel of each task still held", async () => {
  const own = await h.replica();
  const { id } = await h.client(own).dispatch("proto.shutdown", {});
  const w = h.rawWorker(own);
  w.hello(["proto.shutdown"], 1);
  const lease = await w.next("lease");
  await h.stopReplica(own, { graceMs: 100 });
  const cancel = await w.next("cancel");
  assert.deepEqual([cancel.taskId, cancel.leaseToken, cancel.reason], [id, lease.leaseToken, CancelReason.SHUTDOWN]);
  const err = await w.result();
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(err.code, Code.Unavailable);
  assert.equal(err.rawMessage, "the server is shutting down; connect to another replica");
});
