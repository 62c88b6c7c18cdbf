/**
 * The stats sampler of one replica: every stats interval (a minute by default) it tries to write one
 * sample of every queue to taskq.queue_stats, which GetStats reads for the dashboard's charts. Every
 * replica runs one and they need no leader: a sample is written under an advisory lock (a replica
 * waits for another that holds it), and not at all when another replica wrote one less than half an
 * interval ago, so samples come about once an interval
 * whichever replicas are up.
 *
 * What it costs: nothing per task. Per sample, one statement that counts the tasks table by queue (as
 * the queue metrics do) and reads the history rows that finished in the window through
 * history_finished_idx; a day of samples is kept (1,440 rows per queue at the default interval). With
 * it, the rate limits' buckets that have refilled are deleted (one statement).
 *
 * A finish is counted in the window its finished_at falls in, and windows are read a little behind the
 * clock (5 s) so that a finish committed a moment after the time it records is still
 * read (task times come from one clock, the database's, on every replica). A finish whose transaction
 * commits later than that after its finished_at is not counted: the charts are for seeing trends, and
 * the exact counts are in history.
 *
 * States: stopped → running (a sample at once, then a timer every interval; one sample at a time) → stopped.
 */
import type pg from "pg";
import type { Logger } from "pino";
import type { Clock } from "./clock.js";
import { withTransaction } from "./sql/db.js";
import { rateBucketsPrune } from "./sql/rates.js";
import { queueStatsLock, queueStatsSample } from "./sql/stats.js";
import type { RateLimits } from "./types.js";

export const DEFAULT_STATS_INTERVAL_MS = 60_000;
/** Samples are kept this long: GetStats windows reach back a day at most. */
const STATS_KEEP_MS = 86_400_000;
/** Finishes are read this far behind the clock (see above). */
const LAG_MS = 5_000;

export class StatsSampler {
  private timer: NodeJS.Timeout | null = null;
  private sampling: Promise<unknown> | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: { intervalMs: number; queues: () => string[]; rates: RateLimits },
  ) {}

  get intervalMs(): number {
    return this.opts.intervalMs;
  }

  /** Samples at once (charts have a point from the start), then every interval. */
  start(): void {
    if (this.timer) return;
    // A tick while a sample is being written (a slow database) is skipped rather than queued.
    this.timer = setInterval(() => this.sampling ?? void this.sample(), this.opts.intervalMs);
    void this.sample();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.sampling;
  }

  /**
   * Writes a sample now unless another was written within half an interval; whether it wrote one. A
   * sample this replica is writing already is waited for first (and then counts as written within half
   * an interval).
   */
  async sample(): Promise<boolean> {
    while (this.sampling) await this.sampling;
    const { intervalMs } = this.opts;
    const run = withTransaction(this.pool, async (tx) => {
      await queueStatsLock(tx);
      const now = this.clock.now();
      const wrote = await queueStatsSample(tx, {
        now,
        queues: this.opts.queues(),
        minGapMs: intervalMs / 2,
        lagMs: LAG_MS,
        keepMs: STATS_KEEP_MS,
        firstWindowMs: intervalMs,
      });
      await rateBucketsPrune(tx, this.opts.rates, now);
      return wrote;
    }).catch((err: Error) => {
      // The database is away (an outage) or busy: the next tick tries again; a gap shows in the charts.
      this.log.warn({ err: err.message }, "sampling queue stats failed");
      return false;
    });
    this.sampling = run;
    try {
      return await run;
    } finally {
      this.sampling = null;
    }
  }
}
