/**
 * The reaper of one replica ends leases that cannot end by themselves:
 *   - attempts past their deadline: a running task timed out (retry rule, STUCK when attempts are
 *     exhausted, and its worker is told to stop); a cancelling task whose grace period ran out → CANCELED
 *   - leases of sessions that are gone, such as every session of a replica killed without a goodbye
 *     (→ PENDING at once, STUCK on the last attempt, CANCELED if cancelling), then their session rows
 *
 * Every replica runs one. They need no leader: each statement skips rows another replica has locked
 * and re-checks state and lease under the lock, so concurrent sweeps split the work and never act twice.
 *
 * States: idle (a timer is set for the next sweep) → sweeping → idle. Sweeps never overlap: a request
 * while one runs queues one more, shared by every request made meanwhile. The timer fires at the earlier of the next known deadline and the sweep interval; leases
 * and interrupts made on this replica bring it forward with expect().
 */
import type { Logger } from "pino";
import type { Meter } from "./meter.js";
import type { Clock } from "./clock.js";
import type { Db } from "./sql/db.js";
import { taskLeaseRelease } from "./sql/lease.js";
import { taskDeadlineExpire, taskLeaseFindOrphaned, taskNextDeadline, RECOVERY_BATCH } from "./sql/recovery.js";
import { sessionDeleteStale } from "./sql/sessions.js";
import type { RecoveredTask, WakeOnFree } from "./types.js";

export interface ReaperOptions {
  /** The longest pause between sweeps. */
  sweepIntervalMs: number;
  /** A session not heartbeated for this long is gone (database clock). */
  staleAfterMs: number;
  /** Queues whose freed slots wake the dispatchers (see WakeOnFree). */
  wakeOnFree: WakeOnFree;
  meter: Meter;
}

export interface SweepResult {
  /** Tasks whose deadline passed: timed out, or canceled after the grace period. */
  expired: RecoveredTask[];
  /** Tasks recovered from sessions that are gone. */
  recovered: RecoveredTask[];
  sessionsRemoved: number;
}

const RETRY_AFTER_ERROR_MS = 1_000;

export const LOST_WORKER_ERROR = "worker lost: its session stopped heartbeating";

/**
 * Recovers one batch of leases of sessions that are gone, as a closed stream would: running tasks back
 * to pending at once (STUCK on the last attempt), cancelling ones CANCELED.
 */
async function leaseRecoverOrphaned(
  db: Db,
  staleAfterMs: number,
  now: Date,
  wakeOnFree: WakeOnFree = [],
): Promise<RecoveredTask[]> {
  const orphans = await taskLeaseFindOrphaned(db, staleAfterMs);
  if (orphans.length === 0) return [];
  const released = await taskLeaseRelease(db, orphans, { how: "lost", error: LOST_WORKER_ERROR, wakeOnFree }, now);
  return [...released].map(([id, status]) => ({ id, status }));
}

export class Reaper {
  /** The latest sweep started or queued; sweeps run one at a time. */
  private last: Promise<unknown> = Promise.resolve();
  /** A sweep waiting for the one in flight; callers asking meanwhile share it. */
  private queued: Promise<SweepResult> | null = null;
  private stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  /**
   * Until then (performance.now()), sessions are not judged by their heartbeats. After a database
   * outage every session's heartbeat looks stale, although their replicas are alive and will heartbeat
   * as soon as they can; recovering their leases at once would run those tasks twice for nothing.
   */
  private holdOffUntil = 0;
  private lastSweepFailed = false;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: ReaperOptions,
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule(this.opts.sweepIntervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimer();
    await this.last;
  }

  /**
   * The database was unreachable and answers again: give every replica one stale period to heartbeat
   * its sessions before leases are judged orphaned. Deadlines are still enforced meanwhile.
   */
  holdOff(): void {
    this.holdOffUntil = performance.now() + this.opts.staleAfterMs;
    this.schedule(this.opts.staleAfterMs);
  }

  /** Something will need attention at `at` (a lease's deadline, an interrupt's grace): sweep by then. */
  expect(at: Date): void {
    if (this.stopped) return;
    this.schedule(at.getTime() - this.clock.now().getTime());
  }

  /** Sweeps now, or right after the sweep in flight, and resolves with what that sweep did. */
  sweep(): Promise<SweepResult> {
    if (this.queued) return this.queued;
    const queued = this.last.then(() => {
      this.queued = null;
      return this.sweepOnce();
    });
    this.queued = queued;
    this.last = queued;
    return queued;
  }

  private async sweepOnce(): Promise<SweepResult> {
    this.clearTimer();
    const result: SweepResult = { expired: [], recovered: [], sessionsRemoved: 0 };
    let next = this.opts.sweepIntervalMs;
    try {
      const expire = () => taskDeadlineExpire(this.db, this.clock.now(), this.opts.wakeOnFree);
      for (let batch = await expire(); ; batch = await expire()) {
        result.expired.push(...batch);
        for (const t of batch) this.opts.meter.attemptEnded(t.status, "timeout", null);
        if (batch.length < RECOVERY_BATCH) break;
      }
      if (this.lastSweepFailed) this.holdOff();
      if (performance.now() >= this.holdOffUntil) {
        for (let batch = await this.recover(); ; batch = await this.recover()) {
          result.recovered.push(...batch);
          for (const t of batch) this.opts.meter.attemptEnded(t.status, "lost", null);
          if (batch.length < RECOVERY_BATCH) break;
        }
        result.sessionsRemoved = await sessionDeleteStale(this.db, this.opts.staleAfterMs);
      }
      const deadline = await taskNextDeadline(this.db);
      if (deadline) next = Math.min(next, deadline.getTime() - this.clock.now().getTime());
      if (result.expired.length + result.recovered.length + result.sessionsRemoved > 0) {
        this.log.info(
          { expired: result.expired.length, recovered: result.recovered.length, sessionsRemoved: result.sessionsRemoved },
          "reaper ended leases",
        );
      }
    } catch (err) {
      this.log.error({ err }, "reaper sweep failed; retrying");
      next = RETRY_AFTER_ERROR_MS;
      this.lastSweepFailed = true;
      if (!this.stopped) this.schedule(next);
      return result;
    }
    this.lastSweepFailed = false;
    if (!this.stopped) this.schedule(next);
    return result;
  }

  private recover(): Promise<RecoveredTask[]> {
    return leaseRecoverOrphaned(this.db, this.opts.staleAfterMs, this.clock.now(), this.opts.wakeOnFree);
  }

  /** Sets the timer to fire in `ms`, unless it is already set to fire sooner. */
  private schedule(ms: number): void {
    const at = Date.now() + Math.max(0, ms);
    if (this.timer && this.timerAt <= at) return;
    this.clearTimer();
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      void this.sweep();
    }, Math.max(0, ms));
    this.timer.unref?.();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }
}
