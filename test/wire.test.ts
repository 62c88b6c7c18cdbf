/**
 * The messages written by hand (@taskq/protocol's wire.ts; the server's Lease and FinishAck in
 * rpc/server-wire.ts, the SDK's Finish and Credits in internal/worker-wire.ts) are byte for byte what the
 * generated code writes, alone and in a batch; and the hand-written encoders cover every field the
 * .proto declares (a field added to the .proto fails here until it is written there too).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema, durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { FinishAckSchema, FinishSchema, LeaseSchema, ServerMessageSchema, SuccessSchema, TaskStatus, WireWriter, WorkerMessageSchema } from "@taskq/protocol";
import {
  FINISH_FIELDS,
  batchMessageOf as workerBatchOf,
  creditsBytes,
  finishBytes,
  messageBytes,
  workerMessageOf,
  type Outcome,
} from "../packages/sdk/src/internal/worker-wire.js";
import type { LeasedTask } from "../packages/server/src/engine/index.js";
import {
  FINISH_ACK_FIELDS,
  LEASE_FIELDS,
  batchMessageOf,
  finishAckBytes,
  leaseBytes,
  serverMessageOf,
} from "../packages/server/src/rpc/server-wire.js";

const base: LeasedTask = {
  id: "42",
  leaseToken: "0b7e2f7e-9f4a-4c47-8c1e-6f0a2e1d3c4b",
  sessionId: "s",
  type: "report.build",
  queue: "default",
  params: {},
  paramsJsonLength: 2,
  attempt: 1,
  maxAttempts: 10,
  timeoutMs: 1_800_000,
  deadlineAt: new Date(),
  title: "",
  idempotencyKey: null,
  concurrencyKey: null,
  createdAtMs: Date.parse("2026-12-03T07:00:00.123Z"),
  dueAtMs: Date.now(),
  trace: null,
};

const leases: LeasedTask[] = [
  base,
  { ...base, timeoutMs: 1_000, attempt: 0, maxAttempts: 0, createdAtMs: 0 },
  { ...base, timeoutMs: 1, title: "Rapport für Müller ✓", idempotencyKey: "key-1", concurrencyKey: "tenant-ü-7", createdAtMs: Date.parse("1999-12-31T23:59:59.999Z") },
  { ...base, timeoutMs: 90_061_001, trace: { parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", state: "vendor=a,other=b" } },
  { ...base, trace: { parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", state: null } },
  {
    ...base,
    params: {
      n: 7,
      big: 2 ** 53 + 2,
      negative: -1.5,
      zero: 0,
      text: "",
      emoji: "🙂",
      yes: true,
      no: false,
      nothing: null,
      list: [1, "two", null, [], {}, [false, { deep: [0] }]],
      nested: { a: { b: { c: "d" } }, empty: {} },
      "0": "an integer-like key comes first in both",
    },
    paramsJsonLength: 200,
  },
];

/** The Lease as the server built it before, through create() and the reflection codec. */
const generated = (t: LeasedTask): MessageInitShape<typeof LeaseSchema> => ({
  taskId: t.id,
  leaseToken: t.leaseToken,
  type: t.type,
  queue: t.queue,
  params: t.params,
  attempt: t.attempt,
  maxAttempts: t.maxAttempts,
  timeout: durationFromMs(t.timeoutMs),
  title: t.title,
  idempotencyKey: t.idempotencyKey ?? "",
  createdAt: timestampFromDate(new Date(t.createdAtMs)),
  traceParent: t.trace?.parent ?? "",
  traceState: t.trace?.state ?? "",
  concurrencyKey: t.concurrencyKey ?? "",
});

const wire = (init: MessageInitShape<typeof ServerMessageSchema>) => toBinary(ServerMessageSchema, create(ServerMessageSchema, init));

test("a Lease written by hand is the generated code's bytes", () => {
  for (const t of leases) {
    assert.deepEqual(toBinary(ServerMessageSchema, serverMessageOf(leaseBytes(t))), wire({ message: { case: "lease", value: generated(t) } }), JSON.stringify(t));
  }
});

test("a FinishAck written by hand is the generated code's bytes", () => {
  const acks: [string, string, TaskStatus, string][] = [
    ["1", "t", TaskStatus.COMPLETED, ""],
    ["18446744073709", "0b7e2f7e-9f4a-4c47-8c1e-6f0a2e1d3c4b", TaskStatus.PENDING, "the worker's finish was refused: résumé"],
    ["", "", TaskStatus.UNSPECIFIED, ""],
  ];
  for (const [taskId, leaseToken, status, error] of acks) {
    assert.deepEqual(
      toBinary(ServerMessageSchema, serverMessageOf(finishAckBytes(taskId, leaseToken, status, error))),
      wire({ message: { case: "finishAck", value: { taskId, leaseToken, status, error } } }),
    );
  }
});

test("a batch of replies written by hand is the generated code's ServerBatch", () => {
  const replies = [leaseBytes(leases[0]), finishAckBytes("1", "t", TaskStatus.FAILED, "boom"), leaseBytes(leases[5])];
  const expected = wire({
    message: {
      case: "batch",
      value: {
        messages: [
          create(ServerMessageSchema, { message: { case: "lease", value: generated(leases[0]) } }),
          create(ServerMessageSchema, { message: { case: "finishAck", value: { taskId: "1", leaseToken: "t", status: TaskStatus.FAILED, error: "boom" } } }),
          create(ServerMessageSchema, { message: { case: "lease", value: generated(leases[5]) } }),
        ],
      },
    },
  });
  assert.deepEqual(toBinary(ServerMessageSchema, batchMessageOf(replies)), expected);
});

test("the hand-written encoders write every field the .proto declares", () => {
  assert.deepEqual(
    LeaseSchema.fields.map((f) => f.number),
    LEASE_FIELDS,
  );
  assert.deepEqual(
    FinishAckSchema.fields.map((f) => f.number),
    FINISH_ACK_FIELDS,
  );
});

const workerWire = (init: MessageInitShape<typeof WorkerMessageSchema>) => toBinary(WorkerMessageSchema, create(WorkerMessageSchema, init));

const results: JsonValue[] = [null, 0, -2.5, 2 ** 53 + 2, "", "text ✓", true, false, [], {}, { startedAt: 1764745200123.5, returnedAt: 1764745200124 }, [1, [null, { a: [] }]]];

test("a worker's Finish written by hand is the generated code's bytes, for a success of every kind of result", () => {
  for (const result of results) {
    const mine = finishBytes("42", "tok", { case: "success", value: { result } });
    const theirs = workerWire({ message: { case: "finish", value: { taskId: "42", leaseToken: "tok", outcome: { case: "success", value: { result: fromJson(ValueSchema, result) } } } } });
    assert.deepEqual(toBinary(WorkerMessageSchema, workerMessageOf(mine)), theirs, JSON.stringify(result));
  }
});

test("other outcomes, credits and any other message go out as the generated code writes them, alone and in a batch", () => {
  const outcomes: Exclude<Outcome, { case: "success" }>[] = [
    { case: "failure", value: { error: "boom" } },
    { case: "retry", value: { error: "later", delay: durationFromMs(1_500) } },
    { case: "decline", value: {} },
    { case: "snooze", value: { delay: durationFromMs(60_000) } },
  ];
  for (const outcome of outcomes) {
    assert.deepEqual(
      toBinary(WorkerMessageSchema, workerMessageOf(finishBytes("7", "t", outcome))),
      workerWire({ message: { case: "finish", value: { taskId: "7", leaseToken: "t", outcome } } }),
    );
  }
  for (const count of [0, 1, 500, 10_000]) {
    assert.deepEqual(toBinary(WorkerMessageSchema, workerMessageOf(creditsBytes(count))), workerWire({ message: { case: "credits", value: { count } } }));
  }
  const log = { case: "logStep" as const, value: { taskId: "7", leaseToken: "t", message: "step" } };
  const batch = [finishBytes("7", "t", { case: "success", value: { result: { ok: true } } }), creditsBytes(1), messageBytes(log)];
  const expected = workerWire({
    message: {
      case: "batch",
      value: {
        messages: [
          create(WorkerMessageSchema, { message: { case: "finish", value: { taskId: "7", leaseToken: "t", outcome: { case: "success", value: { result: fromJson(ValueSchema, { ok: true }) } } } } }),
          create(WorkerMessageSchema, { message: { case: "credits", value: { count: 1 } } }),
          create(WorkerMessageSchema, { message: log }),
        ],
      },
    },
  });
  assert.deepEqual(toBinary(WorkerMessageSchema, workerBatchOf(batch)), expected);
});

test("the worker's hand-written Finish covers every field of Finish and Success", () => {
  assert.deepEqual(
    FinishSchema.fields.map((f) => f.number),
    FINISH_FIELDS,
  );
  assert.deepEqual(
    SuccessSchema.fields.map((f) => f.number),
    [1],
  );
});

test("WireWriter writes what protobuf-es's BinaryWriter writes, for every kind of value and length", () => {
  const strings = ["", "a", "x".repeat(127), "x".repeat(128), "y".repeat(300), "é", "ü".repeat(63), "ü".repeat(64), "日本語", "😀 emoji", "\u0000nul", "ab\ud800lone", `${"z".repeat(126)}é`];
  const numbers = [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31 - 1, 2 ** 32, 2 ** 53 - 1];
  const negatives = [-1, -128, -(2 ** 31)];
  const doubles = [0, -0, 1.5, -2.25, Number.NaN, Number.POSITIVE_INFINITY, Number.MIN_VALUE, Number.MAX_SAFE_INTEGER];
  /** The same calls on either writer (WireWriter has BinaryWriter's methods that wire.ts uses). */
  const writeAll = (writer: BinaryWriter, nested: number) => {
    for (const [i, s] of strings.entries()) writer.tag(i + 1, WireType.LengthDelimited).string(s);
    for (const n of numbers) writer.tag(20, WireType.Varint).uint32(n >>> 0 === n ? n : 0).tag(21, WireType.Varint).int64(n);
    for (const n of negatives) writer.tag(22, WireType.Varint).int32(n);
    for (const d of doubles) writer.tag(23, WireType.Bit64).double(d);
    writer.tag(24, WireType.Varint).bool(true).tag(24, WireType.Varint).bool(false);
    writer.tag(25, WireType.LengthDelimited).fork().raw(new Uint8Array(nested).fill(7)).tag(1, WireType.LengthDelimited).fork().string("é".repeat(nested)).join().join();
    writer.tag(26, WireType.LengthDelimited).bytes(new Uint8Array(nested).fill(9));
    return writer.finish();
  };
  for (const nested of [0, 1, 120, 127, 128, 16_384]) {
    const ours = writeAll(new WireWriter() as unknown as BinaryWriter, nested);
    assert.deepEqual(Buffer.from(ours), Buffer.from(writeAll(new BinaryWriter(), nested)), `nested length ${nested}`);
  }
});
