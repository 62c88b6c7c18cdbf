/**
 * The engine's settings and their defaults: what config may set per queue, per task type and per
 * schedule, the liveness timings that follow from the stale-check interval, and the small functions
 * that turn settings into what the engine's parts take.
 */
import { DEFAULT_TIME_ZONE } from "./cron.js";
import type { JsonObject, KeyShares, QueueCounts, QueueLimits, RateLimit, RateLimits, ScheduleDef, ScheduleSource } from "./types.js";

export const DEFAULT_MAX_ATTEMPTS = 10;
export const DEFAULT_RETRY_DELAY_MS = 30_000;
export const DEFAULT_TIMEOUT_MS = 30 * 60_000;
export const DEFAULT_POLL_INTERVAL_MS = 5_000;
/** A replica killed without a goodbye has its tasks recovered within this time. */
export const DEFAULT_STALE_CHECK_MS = 60_000;
/** How long an interrupted task's worker has to stop before the task is CANCELED without it. */
export const DEFAULT_CANCEL_GRACE_MS = 30_000;
/** On SIGTERM, how long running tasks have to finish before they go back to the queue. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;

/**
 * The timings that follow from the stale-check interval S. A session is stale after S/2 without a
 * heartbeat; reapers sweep every S/4. A worker that says nothing for S/2 has its stream closed, and so
 * does one that reads nothing the server sends for S/2.
 *
 * Leases: a session's leases are valid for V = 4/5 of S/2 after the replica last sent a heartbeat that
 * the database confirmed. Reapers judge by the heartbeat's time in the database, which is no earlier
 * than its sending, and only S/2 after it; so a session whose replica stalls stops (its leases are no
 * longer delivered, its worker aborts their handlers) before any reaper may recover its leases, with
 * S/10 to spare for the handlers to stop.
 *
 * Heartbeats, of the replica's sessions and of each worker, come every V/4 = S/10. A worker's deadline
 * is renewed by an ack that promises at least V minus one replica heartbeat interval (and the
 * database's latency), and the next ack is due one worker heartbeat interval later: half of V is left
 * as slack for slow statements, round trips and busy event loops before a healthy session lapses. A
 * replica that dies is noticed at most S/10 + S/2 + S/4 < S after its last heartbeat.
 */
export function livenessTimings(staleCheckMs: number) {
  const staleAfterMs = Math.max(1, Math.floor(staleCheckMs / 2));
  const leaseValidityMs = Math.max(1, Math.floor((staleAfterMs * 4) / 5));
  return {
    heartbeatIntervalMs: Math.max(1, Math.floor(leaseValidityMs / 4)),
    staleAfterMs,
    sweepIntervalMs: Math.max(1, Math.floor(staleCheckMs / 4)),
    silentAfterMs: staleAfterMs,
    leaseValidityMs,
  };
}

/** A schedule as config declares it; unset fields take defaults (queue "scheduled", no params). */
export interface ScheduleConfig {
  name: string;
  cron: string;
  timeZone?: string;
  type: string;
  queue?: string;
  params?: JsonObject;
  title?: string;
  priority?: number;
}

/** A queue as ListQueues shows it. */
export interface QueueInfo extends QueueSettings, QueueCounts {
  name: string;
}

/** Per-task-type settings from config. */
export interface TaskTypeSettings {
  /** Below the task's own timeout and the worker's declared one; above the queue's. */
  timeoutMs?: number;
}

/** Per-queue settings; unset fields fall back to the engine defaults. */
export interface QueueSettings {
  /** The most tasks of this queue running at once, across every worker and replica; unset: no limit. */
  maxWorkers?: number;
  /** The most tasks of one concurrency key running at once in this queue, across every worker and replica; unset: no limit. */
  maxRunningPerKey?: number;
  /** Key → how many tasks it takes per turn when keys take turns (default 1). */
  keyWeights?: Record<string, number>;
  /** Tasks with at least this priority are leased before any key's turn; unset: keys' turns come first. */
  urgentPriority?: number;
  /** Starts allowed to the whole queue, across every replica; unset: no limit. */
  rateLimit?: RateLimit;
  /** Starts allowed to each concurrency key of the queue, across every replica; unset: no limit. */
  rateLimitPerKey?: RateLimit;
  timeoutMs?: number;
  retryDelayMs?: number;
  maxAttempts?: number;
}

/** The queue scheduled tasks run in unless their schedule names another. */
export const SCHEDULED_QUEUE = "scheduled";

export function scheduleDef(s: ScheduleConfig, source: ScheduleSource): ScheduleDef {
  return {
    name: s.name,
    cron: s.cron,
    timeZone: s.timeZone ?? DEFAULT_TIME_ZONE,
    type: s.type,
    queue: s.queue ?? SCHEDULED_QUEUE,
    params: s.params ?? {},
    title: s.title ?? "",
    priority: s.priority ?? 0,
    source,
  };
}

export function queueLimits(queues: Record<string, QueueSettings>, global: number | null): QueueLimits {
  const limited = Object.entries(queues).flatMap(([name, q]) => (q.maxWorkers === undefined ? [] : [[name, q.maxWorkers]]));
  const perKey = Object.entries(queues).flatMap(([name, q]) => (q.maxRunningPerKey === undefined ? [] : [[name, q.maxRunningPerKey]]));
  return { queues: Object.fromEntries(limited), perKey: Object.fromEntries(perKey), rates: rateLimits(queues), global };
}

/** The queues whose claims must count other replicas' leases (max_workers or max_running_per_key), or null: all of them (global_max_workers). */
export function limitedQueues(limits: QueueLimits): string[] | null {
  return limits.global !== null ? null : [...new Set([...Object.keys(limits.queues), ...Object.keys(limits.perKey), ...Object.keys(limits.rates)])];
}

/** The queues' rate limits, for the claim and for what ListQueues shows. */
function rateLimits(queues: Record<string, QueueSettings>): RateLimits {
  const limited = Object.entries(queues).flatMap(([name, q]) =>
    q.rateLimit || q.rateLimitPerKey ? [[name, { queue: q.rateLimit ?? null, key: q.rateLimitPerKey ?? null }]] : [],
  );
  return Object.fromEntries(limited);
}

export function keyShares(queues: Record<string, QueueSettings>): KeyShares {
  const weights = Object.entries(queues).flatMap(([name, q]) => (q.keyWeights ? [[name, q.keyWeights]] : []));
  const urgent = Object.entries(queues).flatMap(([name, q]) => (q.urgentPriority === undefined ? [] : [[name, q.urgentPriority]]));
  return { weights: Object.fromEntries(weights), urgentPriority: Object.fromEntries(urgent) };
}

export function timeoutsOf(settings: Record<string, { timeoutMs?: number }>): Record<string, number> {
  return Object.fromEntries(Object.entries(settings).flatMap(([name, s]) => (s.timeoutMs ? [[name, s.timeoutMs]] : [])));
}
