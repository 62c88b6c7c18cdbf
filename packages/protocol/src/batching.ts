/**
 * Batches on a worker stream (WorkerMessage.batch, ServerMessage.batch): both sides send what they
 * have queued at once as one message, when the other side said it understands batches.
 *
 * A batch must stay well inside the 4 MiB that gRPC implementations accept per message by default,
 * so each side adds up an upper bound of its messages' encoded sizes, computed from lengths it
 * already has rather than by encoding twice. JSON carried as google.protobuf.Value grows by at most
 * 5.5× (an array of one-digit numbers: 2 characters of JSON, 11 bytes of protobuf each); a string
 * character takes at most 3 bytes of UTF-8.
 */

/** The most messages one batch carries; a receiver refuses larger batches. */
export const MAX_BATCH_MESSAGES = 1_000;

/** What one batch may add up to by `bytesBound`: a quarter of the 4 MiB default message limit. */
export const BATCH_BYTES = 1024 * 1024;

export const BATCH_LIMITS = { count: MAX_BATCH_MESSAGES, bytes: BATCH_BYTES };

/**
 * An upper bound of the encoded size of a message holding JSON text of `jsonLength` characters and
 * strings of `textLength` characters in all, besides fields of fixed size.
 */
export const bytesBound = (jsonLength: number, textLength: number): number => 128 + 6 * jsonLength + 3 * textLength;
