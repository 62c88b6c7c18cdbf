/**
 * "@taskq/sdk/client": the TaskClient on any connect Transport, with nothing from Node, for browsers
 * (with @connectrpc/connect-web) and other runtimes. The Worker and connecting by URL are in the Node
 * entry, "@taskq/sdk".
 */
export { TaskClient, TaskHandle, type DispatchItem, type DispatchOptions, type WatchOptions } from "./client-core.js";
export { Code, TaskFailedError, TaskqError } from "./errors.js";
export type { JsonObject, JsonValue, LogStep, QueueInfo, ScheduleInfo, TaskInfo, TaskStatusName, WatchEvent } from "./types.js";
