/**
 * The bad-input corpus: well over a hundred malformed requests and worker message sequences, each
 * answered with the right code and changing nothing; then a bounded fuzz run of random bytes and
 * mutated valid messages against every method, which must never crash the server or be answered
 * INTERNAL or UNKNOWN. (bad-input.test.ts holds the first, hand-written cases with exact messages.)
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { Replica } from "../packages/server/src/app.js";
import { Origin, type RetryBackoff, TaskStatus } from "@taskq/protocol";
import {
  DispatchRequestSchema,
  ListActiveRequestSchema,
  ListHistoryRequestSchema,
  TaskQueue,
  type ActiveSortField,
} from "@taskq/protocol";
import { type HelloSchema, WorkerMessageSchema, WorkerService } from "@taskq/protocol";
import { Health } from "@taskq/protocol/grpc";
import { Harness, type RawWorker } from "./helpers.js";

let h: Harness;
let replica: Replica;
let rpc: Client<typeof TaskQueue>;
before(async () => {
  h = await Harness.create();
  replica = await h.replica();
  rpc = h.rpc();
});
after(() => h.close());

const state = async () =>
  (
    await h.pool.query(
      `select (select count(*) from taskq.tasks) t, (select count(*) from taskq.history) h, (select count(*) from taskq.idempotency_keys) k,
              (select count(*) from taskq.task_log) l, (select count(*) from taskq.queues) q, (select count(*) from taskq.schedules) s,
              (select coalesce(string_agg(status || attempts || status_values::text, ',' order by id), '') from taskq.tasks) rows`,
    )
  ).rows[0];

const INVALID = Code.InvalidArgument;
type Dispatch = MessageInitShape<typeof DispatchRequestSchema>;
const token = (o: unknown) => Buffer.from(typeof o === "string" ? o : JSON.stringify(o)).toString("base64url");
const drain = async (stream: AsyncIterable<unknown>) => {
  for await (const _ of stream) void _;
};

const BAD_NAMES = ["two words", "-leading-dash", ".dot", "a\u0000b", "line\nbreak", "ümlaut", "🙂", "x".repeat(201), "semi;colon", "a*b"];
const BAD_IDS = ["", "0", "-1", "01", "1e3", " 1", "1 ", "0x10", "9223372036854775808", "99999999999999999999", "١٢", "1.0", "abc", "1,2"];
const BAD_DURATIONS = [
  { seconds: -1n, nanos: 0 },
  { seconds: 10n ** 12n, nanos: 0 },
  { seconds: 0n, nanos: 2_000_000_000 },
  { seconds: 1n, nanos: -1 },
  { seconds: -1n, nanos: 1 },
  { seconds: 9223372036854775807n, nanos: 999_999_999 },
];
const BAD_TIMESTAMPS = [
  { seconds: -(10n ** 13n), nanos: 0 },
  { seconds: 10n ** 13n, nanos: 0 },
  { seconds: 1n, nanos: -1 },
  { seconds: 1n, nanos: 1_000_000_000 },
];

/** [name, call, expected code] */
type Case = [string, () => Promise<unknown>, Code];

function requestCases(): Case[] {
  const cases: Case[] = [];
  const dispatch = (name: string, req: Dispatch, code = INVALID) => {
    cases.push([`Dispatch ${name}`, () => rpc.dispatch(req), code]);
    cases.push([`DispatchBatch with ${name} in third place`, () => rpc.dispatchBatch({ tasks: [{ type: "ok" }, { type: "ok" }, req] }), code]);
  };
  for (const type of BAD_NAMES) dispatch(`type ${JSON.stringify(type).slice(0, 30)}`, { type });
  dispatch("with an empty type", { type: "" });
  for (const queue of ["two words", "undefined-queue", "x".repeat(201)]) dispatch(`to queue ${queue.slice(0, 20)}`, { type: "a", queue });
  BAD_DURATIONS.forEach((d, i) => {
    dispatch(`timeout #${i}`, { type: "a", timeout: d });
    dispatch(`retry_delay #${i}`, { type: "a", retryDelay: d });
  });
  dispatch("delay of -5 s", { type: "a", delay: durationFromMs(-5_000) });
  for (const [i, t] of BAD_TIMESTAMPS.entries()) dispatch(`run_at #${i}`, { type: "a", runAt: t });
  for (const n of [0, 1001, 2 ** 32 - 1]) dispatch(`max_attempts ${n}`, { type: "a", maxAttempts: n });
  for (const o of [3, 99, -1]) dispatch(`origin ${o}`, { type: "a", origin: o as Origin });
  for (const b of [3, -7]) dispatch(`retry_backoff ${b}`, { type: "a", retryBackoff: b as RetryBackoff });
  dispatch("title of 10,000 characters", { type: "a", title: "t".repeat(10_000) });
  dispatch("initiator of 201 characters", { type: "a", initiator: "i".repeat(201) });
  dispatch("node_id of 201 characters", { type: "a", nodeId: "n".repeat(201) });
  dispatch("idempotency_key of 201 characters", { type: "a", idempotencyKey: "k".repeat(201) });
  dispatch("params of 1 MiB + 1 (in one string)", { type: "a", params: { s: "p".repeat(1024 * 1024) } });
  dispatch("params of 1 MiB + (many keys)", { type: "a", params: Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`k${i}`, "v".repeat(20)])) });
  cases.push(["DispatchBatch of nothing", () => rpc.dispatchBatch({}), INVALID]);
  cases.push(["DispatchBatch of 1001", () => rpc.dispatchBatch({ tasks: Array.from({ length: 1001 }, () => ({ type: "a" })) }), INVALID]);

  for (const id of BAD_IDS) {
    cases.push([`Status of id ${JSON.stringify(id)}`, () => rpc.status({ taskId: id }), INVALID]);
    cases.push([`Interrupt of id ${JSON.stringify(id)}`, () => rpc.interrupt({ taskId: id }), INVALID]);
    cases.push([`WatchTask of id ${JSON.stringify(id)}`, () => drain(rpc.watchTask({ taskId: id })), INVALID]);
  }
  cases.push(["Status of a task that never was", () => rpc.status({ taskId: "9000000000000000000" }), Code.NotFound]);
  cases.push(["Interrupt of a task that never was", () => rpc.interrupt({ taskId: "777777" }), Code.NotFound]);
  cases.push(["WatchTask after_seq past int8", () => drain(rpc.watchTask({ taskId: "777777", afterSeq: 2n ** 64n - 1n })), Code.NotFound]);

  type Active = MessageInitShape<typeof ListActiveRequestSchema>;
  type History = MessageInitShape<typeof ListHistoryRequestSchema>;
  const active = (name: string, req: Active) => cases.push([`ListActive ${name}`, () => rpc.listActive(req), INVALID]);
  const history = (name: string, req: History) => cases.push([`ListHistory ${name}`, () => rpc.listHistory(req), INVALID]);
  for (const s of [99, -1]) active(`sort_by ${s}`, { sortBy: s as ActiveSortField });
  for (const s of [TaskStatus.COMPLETED, TaskStatus.UNSPECIFIED, 42 as TaskStatus]) active(`status ${s}`, { statuses: [TaskStatus.PENDING, s] });
  for (const s of [TaskStatus.PENDING, TaskStatus.UNSPECIFIED, 42 as TaskStatus]) history(`status ${s}`, { statuses: [s] });
  BAD_TIMESTAMPS.forEach((t, i) => {
    active(`created_after #${i}`, { createdAfter: t });
    history(`created_before #${i}`, { createdBefore: t });
  });
  for (const name of ["two words", "x".repeat(201)]) {
    active(`type ${name.slice(0, 12)}`, { type: name });
    active(`queue ${name.slice(0, 12)}`, { queue: name });
    history(`type ${name.slice(0, 12)}`, { type: name });
  }
  active("title_search of 501", { titleSearch: "s".repeat(501) });
  active("id filter abc", { id: "abc" });
  active("page_size 501", { pageSize: 501 });
  history("page_size 2^32-1", { pageSize: 2 ** 32 - 1 });
  history("origin 9", { origin: 9 as Origin });
  const junkTokens = ["%%%", token("not json"), token([]), token({}), token({ sort: "created_at:asc" }), token({ sort: "created_at:asc", value: "x", id: "1" }), token({ sort: "id:asc", value: "1; drop table", id: "1" }), token({ sort: "created_at:asc", value: "2026-01-01 00:00:00+00", id: "-4" }), "a".repeat(5_000)];
  for (const [i, t] of junkTokens.entries()) active(`page_token #${i}`, { pageToken: t });
  const junkHistoryTokens = [token({}), token({ createdAt: "never", id: "1" }), token({ createdAt: "2026-01-01T00:00:00Z", id: "x" }), token(null), "!!"];
  for (const [i, t] of junkHistoryTokens.entries()) history(`page_token #${i}`, { pageToken: t });
  for (const q of ["", "two words", "undefined-queue"]) {
    cases.push([`PauseQueue ${JSON.stringify(q)}`, () => rpc.pauseQueue({ queue: q }), INVALID]);
    cases.push([`ResumeQueue ${JSON.stringify(q)}`, () => rpc.resumeQueue({ queue: q }), INVALID]);
  }
  cases.push(["Interrupt with a reason of 501", () => rpc.interrupt({ taskId: "1", reason: "r".repeat(501) }), INVALID]);
  return cases;
}

describe("malformed requests", () => {
  const cases = requestCases();
  test(`the corpus holds at least 100 requests (${cases.length})`, () => assert.ok(cases.length >= 100));
  test("each is refused with the right code and changes nothing", async () => {
    const before = await state();
    const wrong: string[] = [];
    for (const [name, call, code] of cases) {
      const err = await call().then(() => null, (e: unknown) => e);
      if (!(err instanceof ConnectError)) wrong.push(`${name}: ${err === null ? "succeeded" : String(err)}`);
      else if (err.code !== code) wrong.push(`${name}: ${Code[err.code]} (${err.rawMessage}), expected ${Code[code]}`);
    }
    assert.deepEqual(wrong, []);
    assert.deepEqual(await state(), before, "a refused request wrote something");
  });
});

/** A worker stream script: what to send, and what must come back. */
type StreamCase = [name: string, run: (w: RawWorker) => Promise<void>];

const hello = (h: MessageInitShape<typeof HelloSchema>) => (w: RawWorker) => w.send({ case: "hello", value: h });
async function endsWith(w: RawWorker, code: Code): Promise<void> {
  const err = await w.result();
  assert.ok(err instanceof ConnectError, `stream ended with ${String(err)}`);
  assert.equal(Code[err.code], Code[code], err.rawMessage);
}

function streamCases(): StreamCase[] {
  const cases: StreamCase[] = [];
  const ZERO = "00000000-0000-0000-0000-000000000000";
  const first: MessageInitShape<typeof WorkerMessageSchema>["message"][] = [
    { case: "credits", value: { count: 5 } },
    { case: "heartbeat", value: {} },
    { case: "logStep", value: { taskId: "1", leaseToken: ZERO, message: "m" } },
    { case: "statusValue", value: { taskId: "1", leaseToken: ZERO, key: "k" } },
    { case: "finish", value: { taskId: "1", leaseToken: ZERO, outcome: { case: "success", value: {} } } },
    { case: undefined },
  ];
  for (const m of first) {
    cases.push([`${m!.case ?? "an empty message"} before hello ends the stream FAILED_PRECONDITION`, async (w) => {
      w.send(m);
      await endsWith(w, Code.FailedPrecondition);
    }]);
  }
  const badHellos: [string, MessageInitShape<typeof HelloSchema>][] = [
    ["no types", { workerName: "w" }],
    ["an empty type name", { taskTypes: [{ name: "" }] }],
    ...BAD_NAMES.map((n): [string, MessageInitShape<typeof HelloSchema>] => [`type ${JSON.stringify(n).slice(0, 20)}`, { taskTypes: [{ name: n }] }]),
    ["a type twice", { taskTypes: [{ name: "a" }, { name: "b" }, { name: "a" }] }],
    ["an undefined queue", { taskTypes: [{ name: "a" }], queues: ["nope"] }],
    ["a bad queue name", { taskTypes: [{ name: "a" }], queues: ["two words"] }],
    ["a worker name of 201", { workerName: "w".repeat(201), taskTypes: [{ name: "a" }] }],
    ...BAD_DURATIONS.map((d, i): [string, MessageInitShape<typeof HelloSchema>] => [`type timeout #${i}`, { taskTypes: [{ name: "a", timeout: d }] }]),
    ["a zero timeout", { taskTypes: [{ name: "a", timeout: durationFromMs(0) }] }],
    ["a 4-field cron", { taskTypes: [{ name: "a", schedule: "* * * *" }] }],
    ["minute 61", { taskTypes: [{ name: "a", schedule: "61 * * * *" }] }],
    ["words for a cron", { taskTypes: [{ name: "a", schedule: "every day" }] }],
    ["a time zone on Mars", { taskTypes: [{ name: "a", schedule: "0 * * * *", timeZone: "Mars/Base" }] }],
    ["a time zone without a schedule", { taskTypes: [{ name: "a", timeZone: "UTC" }] }],
  ];
  for (const [name, h] of badHellos) {
    cases.push([`a hello with ${name} ends the stream INVALID_ARGUMENT`, async (w) => {
      hello(h)(w);
      await endsWith(w, Code.InvalidArgument);
    }]);
  }
  const opened = async (w: RawWorker) => {
    w.hello(["corpus.none"]);
    await w.next("welcome");
  };
  cases.push(["a second hello ends the stream FAILED_PRECONDITION", async (w) => {
    await opened(w);
    w.hello(["corpus.none"]);
    await endsWith(w, Code.FailedPrecondition);
  }]);
  cases.push(["an empty message after hello ends the stream INVALID_ARGUMENT", async (w) => {
    await opened(w);
    w.send({ case: undefined });
    await endsWith(w, Code.InvalidArgument);
  }]);
  const inBand: [string, MessageInitShape<typeof WorkerMessageSchema>["message"], "finishRejected" | "updateRejected"][] = [
    ["a finish of an unknown task", { case: "finish", value: { taskId: "424242", leaseToken: ZERO, outcome: { case: "success", value: {} } } }, "finishRejected"],
    ["a finish with a malformed token", { case: "finish", value: { taskId: "1", leaseToken: "token", outcome: { case: "success", value: {} } } }, "finishRejected"],
    ["a finish with a bad task id", { case: "finish", value: { taskId: "x", leaseToken: ZERO, outcome: { case: "failure", value: { error: "e" } } } }, "finishRejected"],
    ["a finish without an outcome", { case: "finish", value: { taskId: "1", leaseToken: ZERO } }, "finishRejected"],
    ["a retry with a negative delay", { case: "finish", value: { taskId: "1", leaseToken: ZERO, outcome: { case: "retry", value: { delay: durationFromMs(-1) } } } }, "finishRejected"],
    ["a retry with a 30-day delay", { case: "finish", value: { taskId: "1", leaseToken: ZERO, outcome: { case: "retry", value: { delay: durationFromMs(30 * 86_400_000) } } } }, "finishRejected"],
    ["a log step of an unknown lease", { case: "logStep", value: { taskId: "1", leaseToken: ZERO, message: "m" } }, "updateRejected"],
    ["a log step with an id of -3", { case: "logStep", value: { taskId: "-3", leaseToken: ZERO, message: "m" } }, "updateRejected"],
    ["a status value with an empty key", { case: "statusValue", value: { taskId: "1", leaseToken: ZERO, key: "" } }, "updateRejected"],
    ["a status value with a malformed token", { case: "statusValue", value: { taskId: "1", leaseToken: "zzz", key: "k" } }, "updateRejected"],
  ];
  for (const [name, m, reply] of inBand) {
    cases.push([`${name} is refused in-band; the stream goes on`, async (w) => {
      await opened(w);
      w.send(m);
      await w.next(reply);
      w.send({ case: "heartbeat", value: {} });
      await w.close();
      assert.equal(await w.result(), "ended");
    }]);
  }
  cases.push(["credits of 2^32-1 are capped, not refused", async (w) => {
    await opened(w);
    w.send({ case: "credits", value: { count: 2 ** 32 - 1 } });
    w.send({ case: "finish", value: { taskId: "1", leaseToken: ZERO, outcome: { case: "success", value: {} } } });
    await w.next("finishRejected");
    await w.close();
  }]);
  return cases;
}

describe("malformed worker streams", () => {
  const cases = streamCases();
  test(`the corpus holds ${cases.length} worker message sequences`, () => assert.ok(cases.length >= 40));
  test("each is answered with the right code or refusal, and changes nothing", async () => {
    const before = await state();
    for (const [name, run] of cases) {
      const w = h.rawWorker();
      try {
        await run(w);
      } catch (err) {
        throw new Error(`${name}: ${(err as Error).message}`, { cause: err });
      } finally {
        await w.close();
      }
    }
    assert.deepEqual(await state(), before, "a refused message wrote something");
    const { rows } = await h.pool.query("select count(*)::int4 as n from taskq.worker_sessions where worker_name <> 'taskq-server'");
    assert.equal(rows[0].n, 0, "every refused or closed stream's session is gone");
  });
});

describe("fuzz", () => {
  /** Calls a method with raw gRPC framing; resolves with the grpc-status the server answered. */
  function rawCall(session: http2.ClientHttp2Session, path: string, body: Buffer): Promise<{ status: number; message: string }> {
    return new Promise((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc+proto", te: "trailers" });
      let status: number | null = null;
      let message = "";
      const take = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] === undefined) return;
        status = Number(h["grpc-status"]);
        message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      };
      req.on("response", take);
      req.on("trailers", take);
      req.on("data", () => {});
      req.on("end", () => (status === null ? reject(new Error(`${path}: no grpc-status`)) : resolve({ status, message })));
      req.on("error", reject);
      req.setTimeout(10_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
      req.end(body);
    });
  }
  const framed = (payload: Uint8Array) => {
    const b = Buffer.alloc(5 + payload.length);
    b.writeUInt32BE(payload.length, 1);
    Buffer.from(payload).copy(b, 5);
    return b;
  };

  // A seeded generator, so a failure can be replayed (FUZZ_SEED=...).
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  let x = seed || 1;
  const rand = () => {
    x = (x * 48271) % 2147483647;
    return x / 2147483647;
  };
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  const mutate = (valid: Uint8Array) => {
    const b = Buffer.from(valid);
    const flips = 1 + Math.floor(rand() * 4);
    for (let i = 0; i < flips && b.length > 0; i++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    return rand() < 0.2 ? b.subarray(0, Math.floor(rand() * b.length)) : b;
  };

  const samples: [string, Uint8Array][] = [
    [`/${TaskQueue.typeName}/Dispatch`, toBinary(DispatchRequestSchema, create(DispatchRequestSchema, { type: "fuzz.t", title: "t", priority: 3, params: { a: 1 }, delay: durationFromMs(60_000) }))],
    [`/${TaskQueue.typeName}/ListActive`, toBinary(ListActiveRequestSchema, create(ListActiveRequestSchema, { pageSize: 5, titleSearch: "x", statuses: [TaskStatus.PENDING] }))],
    [`/${TaskQueue.typeName}/ListHistory`, toBinary(ListHistoryRequestSchema, create(ListHistoryRequestSchema, { pageSize: 5, origin: Origin.USER }))],
    [`/${WorkerService.typeName}/Connect`, toBinary(WorkerMessageSchema, create(WorkerMessageSchema, { message: { case: "hello", value: { workerName: "f", taskTypes: [{ name: "fuzz.none", schedule: "0 * * * *" }] } } }))],
  ];
  const methods = [
    ...Object.values(TaskQueue.method).map((m) => `/${TaskQueue.typeName}/${m.name}`),
    `/${WorkerService.typeName}/Connect`,
    `/${Health.typeName}/Check`,
  ];

  // Bytes that do not decode as the request message are answered INTERNAL "parse binary: …" by
  // connect-es before any taskq code runs (grpc-go answers the same way). Anything that decodes reaches
  // the validation, and must never produce INTERNAL or UNKNOWN.
  const UNDECODABLE = /^parse binary: /;
  const GRPC_OK = 0;

  test("random bytes and mutated messages against every method: no crash, never INTERNAL or UNKNOWN past decoding", { timeout: 120_000 }, async () => {
    const session = http2.connect(replica.server.url);
    const statuses = new Map<number, number>();
    const bad: string[] = [];
    const calls: [string, Buffer][] = [];
    for (const path of methods) {
      for (let i = 0; i < 25; i++) calls.push([path, framed(bytes(Math.floor(rand() * 200)))]);
      for (let i = 0; i < 5; i++) calls.push([path, bytes(1 + Math.floor(rand() * 50))]); // not even framed
    }
    for (const [path, valid] of samples) for (let i = 0; i < 100; i++) calls.push([path, framed(mutate(valid))]);
    for (const [path, body] of calls) {
      const { status, message } = await rawCall(session, path, body).catch((err: Error) => {
        bad.push(`${path}: ${err.message}`);
        return { status: -1, message: "" };
      });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if ((status === Code.Internal && !UNDECODABLE.test(message)) || status === Code.Unknown) {
        bad.push(`${path} answered ${Code[status]} (${message}) to ${body.toString("hex").slice(0, 80)}`);
      }
    }
    session.close();
    assert.deepEqual(bad, [], `seed ${seed}`);
    assert.ok(calls.length >= 700);
    // The mutations reach taskq's own code: some are refused by its validation, some succeed.
    assert.ok((statuses.get(Code.InvalidArgument) ?? 0) > 0 && (statuses.get(GRPC_OK) ?? 0) > 0, `seed ${seed}: ${JSON.stringify([...statuses])}`);
    // Still serving.
    const t = await h.client().dispatch("fuzz.after");
    assert.equal((await h.client().status(t.id)).status, "pending");
  });
});
