/**
 * Cron expressions: five fields (minute hour day-of-month month day-of-week) in an IANA time zone,
 * evaluated by croner. Parsing validates both, so a bad schedule is refused where it is declared.
 */
import { Cron } from "croner";

export const DEFAULT_TIME_ZONE = "UTC";

export interface CronSchedule {
  /** The first tick strictly after `after`, or null if there is none. */
  nextAfter(after: Date): Date | null;
}

/** Parses a 5-field cron expression; throws an Error whose message says what is wrong. */
export function cronParse(expression: string, timeZone: string = DEFAULT_TIME_ZONE): CronSchedule {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) throw new Error(`"${expression}" must have 5 fields (minute hour day month weekday), not ${fields.length}`);
  let cron: Cron;
  try {
    cron = new Cron(expression, { timezone: timeZone, paused: true });
  } catch (err) {
    throw new Error(`"${expression}" is not a valid cron expression: ${(err as Error).message.replace(/^CronPattern: /, "")}`);
  }
  try {
    cron.nextRun(new Date());
  } catch {
    throw new Error(`"${timeZone}" is not an IANA time zone`);
  }
  return { nextAfter: (after) => cron.nextRun(after) };
}
