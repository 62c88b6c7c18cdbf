/**
 * The worker's side of the stream as bytes: every task costs a worker a Finish and, as its handler
 * ends, Credits; a success's Finish is written here straight from the handler's JSON result (see
 * @taskq/protocol's wire.ts for why and how). Every other message goes through the generated code and
 * is then kept as bytes the same way. test/wire.test.ts checks them against the generated code.
 */
import { create, toBinary, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  type FinishSchema,
  WorkerMessageSchema,
  WireWriter,
  batchEnvelopeOf,
  envelopeOf,
  writeString,
  writeValueFields,
  type EncodedField,
  type WorkerMessage,
} from "@taskq/protocol";

/** WorkerMessage's fields used here. */
const FIELD = { credits: 2, finish: 6, batch: 7 } as const;

/** The Finish fields and outcome cases written here (a test checks them against the descriptor). */
export const FINISH_FIELDS = [1, 2, 3, 4, 5, 6, 7];

export type MessageInit = MessageInitShape<typeof WorkerMessageSchema>["message"];
type ProtoOutcome = NonNullable<MessageInitShape<typeof FinishSchema>["outcome"]>;
/** A finish's outcome: a success carries its result as a JSON value (written straight to bytes), the others are as the generated code takes them. */
export type Outcome = { case: "success"; value: { result: JsonValue } } | Exclude<ProtoOutcome, { case: "success" }>;

/** A Finish: a success written from its result (a JSON value); any other outcome through the generated code. */
export function finishBytes(taskId: string, leaseToken: string, outcome: Outcome): EncodedField {
  if (outcome.case !== "success") return messageBytes({ case: "finish", value: { taskId, leaseToken, outcome } });
  const w = new WireWriter().fork();
  writeString(w, 1, taskId);
  writeString(w, 2, leaseToken);
  // Success { Value result = 1 }: the result is always set (null is a Value too).
  w.tag(3, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).fork();
  writeValueFields(w, outcome.value.result);
  w.join().join();
  return { field: FIELD.finish, data: w.join().finish() };
}

/** Credits. */
export function creditsBytes(count: number): EncodedField {
  const w = new WireWriter().fork();
  if (count !== 0) w.tag(1, WireType.Varint).uint32(count);
  return { field: FIELD.credits, data: w.join().finish() };
}

/**
 * Any message, through the generated code. A WorkerMessage with one field set is that field's tag (one
 * byte: every field of WorkerMessage is below 16) followed by the field's length-prefixed bytes.
 */
export function messageBytes(message: MessageInit): EncodedField {
  const bytes = toBinary(WorkerMessageSchema, create(WorkerMessageSchema, { message }));
  return { field: bytes[0] >> 3, data: bytes.subarray(1) };
}

/** The WorkerMessage that carries one message. */
export const workerMessageOf = (m: EncodedField): WorkerMessage => envelopeOf(WorkerMessageSchema, m);

/** The WorkerMessage that carries several as one WorkerBatch, in order. */
export const batchMessageOf = (messages: EncodedField[]): WorkerMessage => batchEnvelopeOf(WorkerMessageSchema, FIELD.batch, messages);
