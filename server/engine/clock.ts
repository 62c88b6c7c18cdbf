/**
 * The engine reads task time only through a Clock, so retry delays, timeouts and schedules can be
 * tested by moving a ManualClock instead of sleeping. Every task timestamp the engine writes comes from
 * here. Session liveness does not: it uses the database's clock (see sql/sessions.ts).
 */
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
