/**
 * The engine's public surface: the Engine with the types of what it takes and returns, and everything
 * else the code beside it (the RPC layer, metrics, config, the replica's wiring in app.ts) uses.
 * scripts/check-layering.ts fails when code outside engine/ imports any other engine module, so what is
 * not exported here is the engine's own business and may change without touching the rest of the server.
 */

// The engine, what it takes and what it gives back.
export { Engine } from "./engine.js";
export type { DispatchInput } from "./dispatch-input.js";
export type { WorkerSession } from "./session.js";
export type { WatchEvent } from "./watch.js";
export { attemptsOf } from "./attempts.js";
export { BULK_LIMIT_MAX } from "./operator-actions.js";
export { DEFAULT_STATS_INTERVAL_MS } from "./stats-sampler.js";
export type {
  ActiveSortColumn,
  ActiveStatus,
  Attempt,
  AttemptOutcome,
  AuditEntry,
  CancelReason,
  FinishedAs,
  JsonObject,
  JsonValue,
  LeasedTask,
  LogEntry,
  Outcome,
  ScheduleRow,
  StatsSample,
  RateLimit,
  TaskFilter,
  TaskRecord,
  TaskStatus,
  WaitReason,
  WorkerHello,
  WorkerInfo,
} from "./types.js";

// Settings and their defaults, as config reads them.
export {
  DEFAULT_CANCEL_GRACE_MS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_STALE_CHECK_MS,
  DEFAULT_TIMEOUT_MS,
  type QueueInfo,
  type QueueSettings,
  type ScheduleConfig,
  type TaskTypeSettings,
} from "./settings.js";
export { DEFAULT_HISTORY_RETENTION_DAYS } from "./maintenance.js";
export { DEFAULT_TIME_ZONE, cronParse } from "./cron.js";

// Errors: what the RPC layer maps to status codes (and raises for bad input), and the database-outage helpers.
export { EngineError, invalidArgument, isDatabaseUnreachable, retryWhileUnreachable, type EngineErrorKind } from "./errors.js";

// Tracing: the W3C trace context stored with a task, and the span of a dispatch (see tracing.ts).
export { contextFromTrace, dispatchSpanStart, spanEnd, traceOf } from "./tracing.js";
export type { TraceContext } from "./types.js";

// Time, the schema, and what the engine reports for metrics.
export { CLOCK_OFFSET_WORTH_LOGGING_MS, DatabaseClock, type Clock } from "./clock.js";
export { migrate } from "./migrate.js";
export type { AttemptEnd, Meter } from "./meter.js";
