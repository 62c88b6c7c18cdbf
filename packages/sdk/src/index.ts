/**
 * The taskq SDK for TypeScript: a client that dispatches and follows tasks, and a worker runtime that
 * runs them. It depends only on the Connect and protobuf libraries, never on server code.
 */
export { TaskClient, type TaskClientOptions } from "./client.js";
export { TaskHandle, type DispatchItem, type DispatchOptions, type WatchOptions } from "./client-core.js";
export { Worker, type Handler, type HandlerOptions, type ImmediateOptions, type TaskContext, type WorkerOptions, type WorkerSettings } from "./worker.js";
export { Code, RetryableError, TaskAbortedError, TaskFailedError, TaskqError, type AbortReason } from "./errors.js";
export { connect, type Connection, type ConnectionOptions } from "./transport.js";
export type { JsonObject, JsonValue, LogStep, QueueInfo, ScheduleInfo, TaskInfo, TaskStatusName, WatchEvent } from "./types.js";
