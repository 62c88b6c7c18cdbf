/**
 * What the engine reports as it works, for metrics. The engine calls these at the points where it
 * knows what happened; server/metrics.ts turns them into Prometheus series. The engine itself never
 * speaks of Prometheus, and without a meter nothing is counted.
 */
import type { FinishedAs } from "./types.js";

/** How an attempt ended: the worker finished it, its deadline passed, or its worker was lost. */
export type AttemptEnd = "finish" | "declined" | "snoozed" | "timeout" | "lost" | "shutdown";

export interface Meter {
  /** Tasks newly queued (idempotent repeats not counted). */
  dispatched(count: number): void;
  /** A task was handed to a worker `waitedMs` after it became due. */
  leased(waitedMs: number): void;
  /** An attempt ended; `to` is where the task went ("pending": it will run again). */
  attemptEnded(to: FinishedAs, how: AttemptEnd, runMs: number | null): void;
  /** The replica's LISTEN connection was lost and is back (after an outage, usually). */
  databaseReconnected(): void;
  /** One claim statement ran, with or without the queue-limit locks. */
  claimed(withLimitLocks: boolean): void;
}

export const noMeter: Meter = { dispatched() {}, leased() {}, attemptEnded() {}, databaseReconnected() {}, claimed() {} };
