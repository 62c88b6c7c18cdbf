/**
 * "@taskq/sdk/client": the TaskClient on any connect Transport, with nothing from Node, for browsers
 * (with @connectrpc/connect-web) and other runtimes. The Worker and connecting by URL are in the Node
 * entry, "@taskq/sdk", which exports all of this too.
 */
export { TaskClient, TaskHandle, type DispatchItem, type DispatchOptions, type MergeOptions, type WatchOptions } from "./client-core.js";
export { ACTIVE_SORT_KEYS, type ActiveSortKey, type ListActiveOptions, type ListHistoryOptions, type TaskPage } from "./lists.js";
export type { AuditEntry, AuditPage, BulkOptions, BulkResult, InterruptManyOptions, ListAuditOptions, TaskFilter } from "./bulk.js";
export type { CountTasksOptions, GetStatsOptions, Stats, StatsSample, StatusCount } from "./stats.js";
export { Code, TaskFailedError, TaskqError } from "./errors.js";
export { traceInterceptor } from "./tracing.js";
export { DEFAULT_WATCH_RESUME } from "./defaults.js";
export {
  ACTIVE_STATUSES,
  FINAL_STATUSES,
  TASK_STATUSES,
  isFinalStatus,
  type ActiveStatusName,
  type JsonObject,
  type JsonValue,
  type LogStep,
  type QueueInfo,
  type QueueKeyInfo,
  type QueueList,
  type RateLimitInfo,
  type ScheduleInfo,
  type AttemptInfo,
  type AttemptOutcomeName,
  type TaskInfo,
  type TaskOrigin,
  type TaskStatusName,
  type WaitReasonName,
  type WatchEvent,
  type WorkerInfo,
} from "./types.js";
