/** The server's logger: pino, JSON, one line per event. */
import { pino, type Logger } from "pino";

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "taskq" } });
}
