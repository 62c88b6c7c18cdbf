/**
 * What the protocol fixes besides the messages: the sizes a server accepts (a request over one is
 * INVALID_ARGUMENT; a worker's result over resultBytes fails the attempt as retryable, so SDKs check it
 * before sending) and the task types the server schedules for workers to run.
 */
export const LIMITS = {
  nameLength: 200,
  titleLength: 500,
  paramsBytes: 1024 * 1024,
  /** Params encoded as protobuf (google.protobuf.Struct), so a lease fits gRPC's default 4 MiB message. */
  paramsEncodedBytes: 3 * 1024 * 1024,
  maxAttempts: 1000,
  durationMs: 7 * 24 * 3600_000,
  batchSize: 1000,
  pageSize: 500,
  logMessageLength: 64 * 1024,
  resultBytes: 1024 * 1024,
  statusValueKeys: 100,
  statusValueKeyLength: 200,
  statusValueBytes: 64 * 1024,
  watchersPerConnection: 100,
} as const;

/** The built-in hourly task every SDK worker handles by deleting its expired temp directories. */
export const TEMP_CLEANUP_TYPE = "taskq.temp-cleanup";
