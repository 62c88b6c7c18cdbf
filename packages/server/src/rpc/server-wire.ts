/**
 * The worker stream's hottest replies as bytes: every task costs the server a Lease and a FinishAck on
 * the way out, written here straight from the engine's values (see @taskq/protocol's wire.ts for why and
 * how). The rarer replies (cancels, rejections, heartbeat acks) go through the generated code, then are
 * kept as bytes the same way. test/wire.test.ts checks both against the generated code, for every field.
 */
import { WireType } from "@bufbuild/protobuf/wire";
import {
  ServerMessageSchema,
  WireWriter,
  batchEnvelopeOf,
  envelopeOf,
  writeSecondsAndNanos,
  writeString,
  writeStructFields,
  type EncodedField,
  type ServerMessage,
  type TaskStatus,
} from "@taskq/protocol";
import type { LeasedTask } from "../engine/index.js";

/** ServerMessage's fields, by the reply they carry. */
export const SERVER_MESSAGE_FIELD = { lease: 2, cancel: 3, finishAck: 4, finishRejected: 5, updateRejected: 6, batch: 7, heartbeatAck: 8 } as const;

/** The Lease fields written here, in field-number order (a test checks them against the descriptor). */
export const LEASE_FIELDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
/** The FinishAck fields written here. */
export const FINISH_ACK_FIELDS = [1, 2, 3, 4];

/** A Lease, as LeaseSchema and the generated code would write it. */
export function leaseBytes(t: LeasedTask): EncodedField {
  const w = new WireWriter().fork();
  writeString(w, 1, t.id);
  writeString(w, 2, t.leaseToken);
  writeString(w, 3, t.type);
  writeString(w, 4, t.queue);
  w.tag(5, WireType.LengthDelimited).fork();
  writeStructFields(w, t.params);
  w.join();
  if (t.attempt !== 0) w.tag(6, WireType.Varint).uint32(t.attempt);
  if (t.maxAttempts !== 0) w.tag(7, WireType.Varint).uint32(t.maxAttempts);
  writeSecondsAndNanos(w, 8, t.timeoutMs);
  writeString(w, 9, t.title);
  writeString(w, 10, t.idempotencyKey ?? "");
  writeSecondsAndNanos(w, 11, t.createdAtMs);
  writeString(w, 12, t.trace?.parent ?? "");
  writeString(w, 13, t.trace?.state ?? "");
  writeString(w, 14, t.concurrencyKey ?? "");
  return { field: SERVER_MESSAGE_FIELD.lease, data: w.join().finish() };
}

/** A FinishAck. */
export function finishAckBytes(taskId: string, leaseToken: string, status: TaskStatus, error: string): EncodedField {
  const w = new WireWriter().fork();
  writeString(w, 1, taskId);
  writeString(w, 2, leaseToken);
  if (status !== 0) w.tag(3, WireType.Varint).int32(status);
  writeString(w, 4, error);
  return { field: SERVER_MESSAGE_FIELD.finishAck, data: w.join().finish() };
}

/** The ServerMessage that carries one reply. */
export const serverMessageOf = (reply: EncodedField): ServerMessage => envelopeOf(ServerMessageSchema, reply);

/** The ServerMessage that carries several replies as one ServerBatch, in order. */
export const batchMessageOf = (replies: EncodedField[]): ServerMessage => batchEnvelopeOf(ServerMessageSchema, SERVER_MESSAGE_FIELD.batch, replies);
