/**
 * The engine reads task time only through a Clock, so retry delays, timeouts and schedules can be
 * tested by moving a ManualClock instead of sleeping. Every task timestamp the engine writes comes from
 * here. Session liveness does not: it uses the database's clock (see sql/sessions.ts).
 *
 * In production the clock is a DatabaseClock: the database's time, read on this machine. Task times are
 * compared across replicas (one replica writes a deadline or a retry time, another's reaper or claim
 * reads it), so they must come from one clock that every replica agrees on, whatever its own says.
 */
import type { Logger } from "pino";
import { clockTimestampRead, type Db } from "./sql/db.js";

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock that moves only when told to. */
export class ManualClock implements Clock {
  private ms: number;
  constructor(start: Date = new Date()) {
    this.ms = start.getTime();
  }
  now(): Date {
    return new Date(this.ms);
  }
  advance(ms: number): void {
    this.ms += ms;
  }
  set(at: Date): void {
    this.ms = at.getTime();
  }
}

/** Round trips per measurement; the shortest is kept, since its midpoint is the least uncertain. */
const CLOCK_SAMPLES = 5;
/** How often a DatabaseClock measures again. Clocks drift by parts per million: in 30 s, about a millisecond at most. */
const CLOCK_RESYNC_MS = 30_000;
/** A measured offset beyond this is logged: this machine's clock is off, and task times ignore it. */
export const CLOCK_OFFSET_WORTH_LOGGING_MS = 1_000;

/**
 * This process's monotonic time, expressed from the epoch. Not Date.now(): a wall clock stepped
 * between two measurements (NTP, an operator) would move now() with it until the next one.
 */
const monotonicMs = () => performance.timeOrigin + performance.now();

export interface ClockMeasurement {
  /** Database time minus local time. */
  offsetMs: number;
  /** The round trip of the sample kept: the offset is right to within half of it. */
  roundTripMs: number;
}

/**
 * The database's clock, read synchronously: local time plus an offset measured against
 * clock_timestamp(). A measurement takes a few round trips and keeps the shortest; the database read
 * its clock somewhere inside that round trip, most likely near its middle (offset = db − midpoint).
 * It measures again every `resyncMs`; a measurement that fails keeps the last offset.
 */
export class DatabaseClock implements Clock {
  private offsetMs = 0;
  private timer: NodeJS.Timeout | null = null;
  private measuring = false;
  private readonly local: () => number;

  constructor(
    private readonly db: Db,
    private readonly opts: {
      log: Logger;
      /** Local time in ms since the epoch; tests pass a skewed one to play a machine whose clock is off. */
      local?: () => number;
      samples?: number;
      resyncMs?: number;
    },
  ) {
    this.local = opts.local ?? monotonicMs;
  }

  now(): Date {
    return new Date(this.local() + this.offsetMs);
  }

  /** Measures the offset and uses it from now on; throws, keeping the last offset, if the database does not answer. */
  async sync(): Promise<ClockMeasurement> {
    let best: ClockMeasurement | null = null;
    for (let i = 0; i < (this.opts.samples ?? CLOCK_SAMPLES); i++) {
      const sent = this.local();
      const dbMs = await clockTimestampRead(this.db);
      const received = this.local();
      if (!best || received - sent < best.roundTripMs) best = { offsetMs: dbMs - (sent + received) / 2, roundTripMs: received - sent };
    }
    const moved = Math.abs(best!.offsetMs - this.offsetMs);
    if (this.timer && moved > CLOCK_OFFSET_WORTH_LOGGING_MS) {
      this.opts.log.warn({ offsetMs: Math.round(best!.offsetMs), movedMs: Math.round(moved) }, "this machine's clock moved against the database's");
    }
    this.offsetMs = best!.offsetMs;
    return best!;
  }

  /** Measures again every `resyncMs` until stop(). The first measurement is the caller's (sync()). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.resync(), this.opts.resyncMs ?? CLOCK_RESYNC_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async resync(): Promise<void> {
    if (this.measuring) return; // the last one is still waiting for the database
    this.measuring = true;
    try {
      await this.sync();
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, "could not read the database's clock; keeping the last offset");
    } finally {
      this.measuring = false;
    }
  }
}
