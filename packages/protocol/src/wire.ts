/**
 * Writing the worker stream's hottest messages straight to bytes, for the server (Lease, FinishAck) and
 * the SDK (Finish, Credits). protobuf-es's reflection codec makes a message object per nested message
 * and walks each descriptor field by field; per task that was the largest part of both sides' own CPU
 * after garbage collection. With these helpers a writer writes the same bytes from plain values.
 *
 * A message is kept as one field of its envelope (ServerMessage, WorkerMessage): the field's number and
 * its length-prefixed bytes. The stream sends an envelope that holds nothing but those bytes as an
 * unknown field, which protobuf-es writes out verbatim; a batch is one such field whose bytes are the
 * messages, each as an entry of the batch's repeated field 1. On the wire this is byte for byte what the
 * generated code writes (test/wire.test.ts compares them). The writer is WireWriter (wire-writer.ts).
 */
import { create, toBinary, type DescMessage, type JsonObject, type JsonValue, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { varintSize, WireWriter } from "./wire-writer.js";

/** One message as a field of its envelope: the field's number, and its bytes with their length prefix. */
export interface EncodedField {
  field: number;
  data: Uint8Array;
}

const LD = WireType.LengthDelimited;

/** Any message, through the generated code, as field `field` of its envelope. */
export function encodedField<Desc extends DescMessage>(field: number, schema: Desc, value: MessageInitShape<Desc>): EncodedField {
  return { field, data: new WireWriter().bytes(toBinary(schema, create(schema, value))).finish() };
}

/** The envelope that carries one encoded message. */
export function envelopeOf<Desc extends DescMessage>(schema: Desc, message: EncodedField): MessageShape<Desc> {
  const envelope = create(schema);
  envelope.$unknown = [{ no: message.field, wireType: LD, data: message.data }];
  return envelope;
}

/** The envelope that carries several encoded messages as one batch (its field `batchField`, whose field 1 repeats the envelope). */
export function batchEnvelopeOf<Desc extends DescMessage>(schema: Desc, batchField: number, messages: EncodedField[]): MessageShape<Desc> {
  const w = new WireWriter().fork();
  // Each entry's length is known (a one-byte tag, then the message's length-prefixed bytes): no fork.
  for (const m of messages) w.tag(1, LD).uint32(1 + m.data.length).tag(m.field, LD).raw(m.data);
  return envelopeOf(schema, { field: batchField, data: w.join().finish() });
}

/** A proto3 string field: not written when empty. */
export function writeString(w: WireWriter, field: number, value: string): void {
  if (value !== "") w.tag(field, LD).string(value);
}

/**
 * A google.protobuf.Duration or Timestamp of `ms` (not negative), as durationFromMs and timestampFromMs
 * make it; its length is worked out first, so it needs no fork of the writer.
 */
export function writeSecondsAndNanos(w: WireWriter, field: number, ms: number): void {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  const length = (seconds !== 0 ? 1 + varintSize(seconds) : 0) + (nanos !== 0 ? 1 + varintSize(nanos) : 0);
  w.tag(field, LD).uint32(length);
  if (seconds !== 0) w.tag(1, WireType.Varint).int64(seconds);
  if (nanos !== 0) w.tag(2, WireType.Varint).int32(nanos);
}

/** google.protobuf.Struct's fields: one map entry (key, Value) per property, in the object's order. */
export function writeStructFields(w: WireWriter, object: JsonObject): void {
  for (const key in object) {
    w.tag(1, LD).fork().tag(1, LD).string(key).tag(2, LD).fork();
    writeValueFields(w, object[key]);
    w.join().join();
  }
}

/** google.protobuf.Value's one field: null, number, string, bool, struct or list (a oneof: written even when zero). */
export function writeValueFields(w: WireWriter, v: JsonValue): void {
  if (v === null) w.tag(1, WireType.Varint).int32(0);
  else if (typeof v === "number") w.tag(2, WireType.Bit64).double(v);
  else if (typeof v === "string") w.tag(3, LD).string(v);
  else if (typeof v === "boolean") w.tag(4, WireType.Varint).bool(v);
  else if (Array.isArray(v)) {
    w.tag(6, LD).fork();
    for (const item of v) {
      w.tag(1, LD).fork();
      writeValueFields(w, item);
      w.join();
    }
    w.join();
  } else {
    w.tag(5, LD).fork();
    writeStructFields(w, v);
    w.join();
  }
}
