/**
 * Counts and sampled activity in the SDK's own terms: countTasks (how many tasks are in each status,
 * for status tabs) and getStats (each queue's depth and its finished tasks by status, as the server
 * sampled them over a recent window, for charts), with their conversion to and from the wire.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { CountTasksRequestSchema, GetStatsRequestSchema, Origin, type CountTasksResponse, type GetStatsResponse } from "@taskq/protocol";
import { Code, TaskqError } from "./errors.js";
import { statusName, type TaskOrigin, type TaskStatusName } from "./types.js";

/** What to count; every field narrows the counts and may be left out. */
export interface CountTasksOptions {
  queue?: string;
  /** Only tasks whose type starts with this text (case matters). */
  typePrefix?: string;
  origin?: TaskOrigin;
}

/** How many tasks are in one status. */
export interface StatusCount {
  status: TaskStatusName;
  /** At most 10,000: the server stops counting there. */
  count: number;
  /** True when there are more than `count`. */
  more: boolean;
}

export interface GetStatsOptions {
  /** How far back from now; default one hour, at most 24 hours. */
  windowMs?: number;
  /** Only this queue; default every queue. */
  queue?: string;
}

/** One queue at one sampling time. */
export interface StatsSample {
  time: Date;
  queue: string;
  /** Tasks waiting (due or not) at that time. */
  pending: number;
  /** Tasks running or being interrupted at that time. */
  running: number;
  /** Tasks that finished in each final status since the queue's sample before. */
  completed: number;
  failed: number;
  canceled: number;
  stuck: number;
}

/** The samples of a window, oldest first, and how often the server samples. */
export interface Stats {
  intervalMs: number;
  samples: StatsSample[];
}

export function countTasksRequest(o: CountTasksOptions) {
  const origin = o.origin === undefined ? Origin.UNSPECIFIED : o.origin === "user" ? Origin.USER : o.origin === "system" ? Origin.SYSTEM : undefined;
  if (origin === undefined) throw invalid(`origin: "${o.origin}" is not user or system`);
  return create(CountTasksRequestSchema, { queue: o.queue, typePrefix: o.typePrefix, origin });
}

export const statusCountsFromPb = (res: CountTasksResponse): StatusCount[] =>
  res.counts.map((c) => ({ status: statusName(c.status), count: c.count, more: c.more }));

export function getStatsRequest(o: GetStatsOptions) {
  if (o.windowMs !== undefined && !(Number.isFinite(o.windowMs) && o.windowMs >= 0)) throw invalid(`windowMs: ${o.windowMs} is not a duration`);
  return create(GetStatsRequestSchema, { window: o.windowMs === undefined ? undefined : durationFromMs(o.windowMs), queue: o.queue });
}

export const statsFromPb = (res: GetStatsResponse): Stats => ({
  intervalMs: res.interval ? durationMs(res.interval) : 0,
  samples: res.samples.map((s) => ({
    time: s.time ? timestampDate(s.time) : new Date(0),
    queue: s.queue,
    pending: s.pending,
    running: s.running,
    completed: s.completed,
    failed: s.failed,
    canceled: s.canceled,
    stuck: s.stuck,
  })),
});

const invalid = (message: string) => new TaskqError(message, Code.InvalidArgument);
