/**
 * The taskq SDK for TypeScript: a client that dispatches and follows tasks, and a worker runtime that
 * runs them. It depends only on the Connect and protobuf libraries, never on server code. Everything
 * it takes and returns is its own type; everything it throws is a TaskqError.
 */
export * from "./portable.js";
export { TaskClient, type TaskClientOptions } from "./client.js";
export { Worker, type Handler, type HandlerOptions, type ImmediateOptions, type TaskContext, type WorkerOptions, type WorkerSettings } from "./worker.js";
export { RetryableError, TaskAbortedError, TaskSnoozed, WorkerRefusedError, type AbortReason } from "./errors.js";
export type { RejectCode } from "./types.js";
export { connect, type Connection, type ConnectionOptions } from "./transport.js";
export {
  DEFAULT_CONCURRENCY,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_RECONNECT,
  DEFAULT_STOP_ABORT_WAIT_MS,
  DEFAULT_STOP_GRACE_MS,
  DEFAULT_TEMP_TTL_MS,
  DEFAULT_URL,
  MAX_RESULT_BYTES,
  TEMP_CLEANUP_TYPE,
} from "./defaults.js";
