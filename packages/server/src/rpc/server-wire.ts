/**
 * The worker stream's replies as bytes. Every task costs the server a Lease and a FinishAck on the way
 * out; through protobuf-es's reflection codec (a message object made by create(), then toBinary walking
 * its descriptor field by field) those two were the largest part of the server's own CPU per task after
 * garbage collection. Here they are written straight from the engine's values with a BinaryWriter; the
 * rarer replies (cancels, rejections) still go through create() and toBinary(), then become bytes the
 * same way.
 *
 * A reply is kept as one field of ServerMessage: its number and its length-prefixed bytes. The stream
 * yields a ServerMessage that holds nothing but those bytes as an unknown field, which protobuf-es
 * writes out verbatim; a batch is one such field (ServerMessage.batch) whose bytes are the replies, each
 * as a ServerBatch.messages entry. On the wire this is byte for byte what the generated code writes
 * (test/server-wire.test.ts compares them, for every field of Lease and FinishAck).
 */
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ServerMessageSchema, type ServerMessage, type TaskStatus } from "@taskq/protocol";
import type { JsonObject, JsonValue, LeasedTask } from "../engine/index.js";

/** One reply: the ServerMessage field it is, and that field's bytes with their length prefix. */
export interface EncodedReply {
  field: number;
  data: Uint8Array;
}

/** ServerMessage's fields, by the reply they carry. */
export const SERVER_MESSAGE_FIELD = { lease: 2, cancel: 3, finishAck: 4, finishRejected: 5, updateRejected: 6, batch: 7, heartbeatAck: 8 } as const;

/** The Lease fields written here, in field-number order (a test checks them against the descriptor). */
export const LEASE_FIELDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
/** The FinishAck fields written here. */
export const FINISH_ACK_FIELDS = [1, 2, 3, 4];

const LD = WireType.LengthDelimited;

/** A Lease, as LeaseSchema and the generated code would write it. */
export function leaseBytes(t: LeasedTask): EncodedReply {
  const w = new BinaryWriter().fork();
  str(w, 1, t.id);
  str(w, 2, t.leaseToken);
  str(w, 3, t.type);
  str(w, 4, t.queue);
  w.tag(5, LD).fork();
  structFields(w, t.params);
  w.join();
  if (t.attempt !== 0) w.tag(6, WireType.Varint).uint32(t.attempt);
  if (t.maxAttempts !== 0) w.tag(7, WireType.Varint).uint32(t.maxAttempts);
  secondsAndNanos(w, 8, t.timeoutMs);
  str(w, 9, t.title);
  str(w, 10, t.idempotencyKey ?? "");
  secondsAndNanos(w, 11, t.createdAt.getTime());
  str(w, 12, t.trace?.parent ?? "");
  str(w, 13, t.trace?.state ?? "");
  return { field: SERVER_MESSAGE_FIELD.lease, data: w.join().finish() };
}

/** A FinishAck. */
export function finishAckBytes(taskId: string, leaseToken: string, status: TaskStatus, error: string): EncodedReply {
  const w = new BinaryWriter().fork();
  str(w, 1, taskId);
  str(w, 2, leaseToken);
  if (status !== 0) w.tag(3, WireType.Varint).int32(status);
  str(w, 4, error);
  return { field: SERVER_MESSAGE_FIELD.finishAck, data: w.join().finish() };
}

/** Any other reply, through the generated code. */
export function replyBytes<Desc extends DescMessage>(field: number, schema: Desc, value: MessageInitShape<Desc>): EncodedReply {
  return { field, data: new BinaryWriter().bytes(toBinary(schema, create(schema, value))).finish() };
}

/** The ServerMessage that carries one reply. */
export function serverMessageOf(reply: EncodedReply): ServerMessage {
  const message = create(ServerMessageSchema);
  message.$unknown = [{ no: reply.field, wireType: LD, data: reply.data }];
  return message;
}

/** The ServerMessage that carries several replies as one ServerBatch, in order. */
export function batchMessageOf(replies: EncodedReply[]): ServerMessage {
  const w = new BinaryWriter().fork();
  // Each entry's length is known (a one-byte tag, then the reply's length-prefixed bytes): no fork.
  for (const r of replies) w.tag(1, LD).uint32(1 + r.data.length).tag(r.field, LD).raw(r.data);
  return serverMessageOf({ field: SERVER_MESSAGE_FIELD.batch, data: w.join().finish() });
}

function str(w: BinaryWriter, field: number, value: string): void {
  if (value !== "") w.tag(field, LD).string(value);
}

/**
 * A google.protobuf.Duration or Timestamp of `ms` (not negative), as durationFromMs and timestampFromMs
 * make it; its length is worked out first, so it needs no fork of the writer.
 */
function secondsAndNanos(w: BinaryWriter, field: number, ms: number): void {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  const length = (seconds !== 0 ? 1 + varintLength(seconds) : 0) + (nanos !== 0 ? 1 + varintLength(nanos) : 0);
  w.tag(field, LD).uint32(length);
  if (seconds !== 0) w.tag(1, WireType.Varint).int64(seconds);
  if (nanos !== 0) w.tag(2, WireType.Varint).int32(nanos);
}

/** The bytes of a varint of `n`, a non-negative integer below 2^53. */
function varintLength(n: number): number {
  let length = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    length++;
  }
  return length;
}

/** google.protobuf.Struct's fields: one map entry (key, Value) per property, in the object's order. */
function structFields(w: BinaryWriter, object: JsonObject): void {
  for (const key in object) {
    w.tag(1, LD).fork().tag(1, LD).string(key).tag(2, LD).fork();
    valueFields(w, object[key]);
    w.join().join();
  }
}

/** google.protobuf.Value's one field: null, number, string, bool, struct or list (a oneof: written even when zero). */
function valueFields(w: BinaryWriter, v: JsonValue): void {
  if (v === null) w.tag(1, WireType.Varint).int32(0);
  else if (typeof v === "number") w.tag(2, WireType.Bit64).double(v);
  else if (typeof v === "string") w.tag(3, LD).string(v);
  else if (typeof v === "boolean") w.tag(4, WireType.Varint).bool(v);
  else if (Array.isArray(v)) {
    w.tag(6, LD).fork();
    for (const item of v) {
      w.tag(1, LD).fork();
      valueFields(w, item);
      w.join();
    }
    w.join();
  } else {
    w.tag(5, LD).fork();
    structFields(w, v);
    w.join();
  }
}
