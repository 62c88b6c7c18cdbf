/**
 * The scheduler of one replica: fires cron schedules' ticks as tasks (origin SYSTEM, initiator
 * "Scheduler"). Every replica runs one and they need no leader: a tick is fired in a transaction that
 * locks the schedule's row (skipping it if another replica holds it) and records the run under the
 * unique key (schedule, tick), so each tick fires once whichever replicas try.
 *
 * Rules: a tick fires only if the previous run of that schedule has finished (debounce); otherwise the
 * tick is skipped. A schedule that `needsWorker` says only workers can run (a built-in one for a type
 * the server does not run itself) also skips ticks while no connected worker declares its type, so it
 * never leaves a task that nothing will lease. After a tick, next_run_at is the first tick after now, so ticks missed while every
 * server was down fire once, not once per missed tick.
 *
 * States: idle (a timer is set for the earliest next_run_at, capped by the poll interval) → firing →
 * idle. Schedules declared on any replica (NOTIFY taskq_schedule) and the timer wake it; a wake-up
 * while firing queues one more round.
 */
import type pg from "pg";
import type { Logger } from "pino";
import type { Clock } from "./clock.js";
import { cronParse } from "./cron.js";
import { withTransaction } from "./sql/db.js";
import { taskInsertMany } from "./sql/dispatch.js";
import { scheduleDeleteMissing, scheduleDueList, scheduleLockDue, scheduleTickRecord, scheduleUpsertMany } from "./sql/schedules.js";
import type { NewTask, ScheduleDef, ScheduleSource } from "./types.js";

export const SCHEDULER_INITIATOR = "Scheduler";

export interface FiredTick {
  schedule: string;
  tick: Date;
  /** The task the tick created, or null when it was skipped. */
  taskId: string | null;
  /** Why the tick was skipped (previous run still active, no worker for it); null when it fired. */
  skipped: string | null;
}

export interface SchedulerOptions {
  pollIntervalMs: number;
  /** Applies the engine's defaults (queue settings) to a scheduled task. */
  taskFor(def: ScheduleDef): NewTask;
  /** Whether only a worker can run this schedule's tasks, so a tick with no worker connected is skipped. */
  needsWorker(def: ScheduleDef): boolean;
}

const RETRY_AFTER_ERROR_MS = 1_000;

export class Scheduler {
  private last: Promise<unknown> = Promise.resolve();
  private queued: Promise<FiredTick[]> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = true;

  constructor(
    private readonly pool: pg.Pool,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: SchedulerOptions,
  ) {}

  start(): void {
    this.stopped = false;
    void this.fire();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.last;
  }

  /**
   * Makes the schedules of `source` exactly `defs`: others of that source are deleted (a schedule
   * removed from the config stops), then `defs` are declared. For config and built-in schedules,
   * which a replica knows in full at start-up.
   */
  async replace(source: ScheduleSource, defs: ScheduleDef[]): Promise<void> {
    const removed = await scheduleDeleteMissing(this.pool, source, defs.map((d) => d.name));
    if (removed.length > 0) this.log.info({ removed, source }, "schedules no longer declared were removed");
    await this.declare(defs);
  }

  /**
   * Declares schedules (already validated); a new or changed one starts at its next tick after now.
   * Returns the names of worker schedules left out because a config or built-in one holds the name.
   */
  async declare(defs: ScheduleDef[]): Promise<string[]> {
    const now = this.clock.now();
    const rows = defs.map((def) => ({ def, nextRunAt: cronParse(def.cron, def.timeZone).nextAfter(now) ?? farFuture() }));
    return scheduleUpsertMany(this.pool, rows, now);
  }

  /** Fires every due tick now, or right after the round in flight; resolves with what that round fired. */
  fire(): Promise<FiredTick[]> {
    if (this.queued) return this.queued;
    const queued = this.last.then(() => {
      this.queued = null;
      return this.fireDue();
    });
    this.queued = queued;
    this.last = queued;
    return queued;
  }

  private async fireDue(): Promise<FiredTick[]> {
    if (this.timer) clearTimeout(this.timer);
    const fired: FiredTick[] = [];
    let waitMs = this.opts.pollIntervalMs;
    try {
      const { due, nextAt } = await scheduleDueList(this.pool, this.clock.now());
      for (const name of due) {
        const tick = await this.fireOne(name);
        if (tick) fired.push(tick);
      }
      if (nextAt) waitMs = Math.min(waitMs, nextAt.getTime() - this.clock.now().getTime());
    } catch (err) {
      this.log.error({ err }, "firing schedules failed; retrying");
      waitMs = RETRY_AFTER_ERROR_MS;
    }
    if (!this.stopped) {
      this.timer = setTimeout(() => void this.fire(), Math.max(0, waitMs));
      this.timer.unref?.();
    }
    return fired;
  }

  /** Fires one schedule's due tick in a transaction; null when it was not due or another replica has it. */
  private async fireOne(name: string): Promise<FiredTick | null> {
    const fired = await withTransaction(this.pool, async (client) => {
      const now = this.clock.now();
      const due = await scheduleLockDue(client, name, now);
      if (!due) return null;
      const nextRunAt = cronParse(due.cron, due.timeZone).nextAfter(now) ?? farFuture();
      let taskId: string | null = null;
      const skipped = due.previousActive ? "previous run still active" : this.opts.needsWorker(due) && !due.workerConnected ? "no connected worker runs it" : null;
      if (!skipped) {
        const [inserted] = await taskInsertMany(client, [this.opts.taskFor(due)], now);
        taskId = inserted!.id;
      }
      // A tick that already has a run (it cannot, under the row lock, but the key says so) rolls back.
      if (!(await scheduleTickRecord(client, { name, tick: due.tick, taskId, nextRunAt }))) throw new TickTaken();
      return { schedule: name, tick: due.tick, taskId, skipped };
    }).catch((err) => {
      if (err instanceof TickTaken) return null;
      throw err;
    });
    if (fired) {
      this.log.info(
        { schedule: name, tick: fired.tick, task: fired.taskId },
        fired.taskId ? "schedule fired" : `schedule tick skipped: ${fired.skipped}`,
      );
    }
    return fired;
  }
}

class TickTaken extends Error {}

/** For a cron expression with no further tick (such as a date long past): never. */
const farFuture = () => new Date("9999-12-31T00:00:00Z");
