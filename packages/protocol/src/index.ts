/**
 * The taskq wire protocol: the messages and services of taskq.v1 generated from proto/, and what both
 * ends share besides: the size limits, the batch limits and the queue a stream's outgoing messages
 * wait in, and the helpers that write the stream's hottest messages straight to bytes. The standard gRPC health and reflection services are in "@taskq/protocol/grpc".
 */
export * from "./gen/taskq/v1/task_pb.js";
export * from "./gen/taskq/v1/task_queue_pb.js";
export * from "./gen/taskq/v1/worker_pb.js";
export { BATCH_BYTES, BATCH_LIMITS, MAX_BATCH_MESSAGES, bytesBound } from "./batching.js";
export { AsyncQueue } from "./async-queue.js";
export { LIMITS, TEMP_CLEANUP_TYPE } from "./limits.js";
export {
  batchEnvelopeOf,
  encodedField,
  envelopeOf,
  writeSecondsAndNanos,
  writeString,
  writeStructFields,
  writeValueFields,
  type EncodedField,
} from "./wire.js";
export { WireWriter } from "./wire-writer.js";
