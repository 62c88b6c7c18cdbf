/**
 * The SDK's defaults and limits, in one place: what a client or worker does when an option is left
 * out. Both entries export them, so a caller can read (or print) what it gets. Nothing here is read
 * from the environment: the application decides that.
 */
import { LIMITS, TEMP_CLEANUP_TYPE } from "@taskq/protocol";

/** The server a client or worker connects to when given no URL: a taskq server on this machine, on its default port. */
export const DEFAULT_URL = "http://127.0.0.1:50051";

/** How often the HTTP/2 connection is pinged, so a peer that vanished is noticed (connect()'s pingIntervalMs). */
export const DEFAULT_PING_INTERVAL_MS = 15_000;

/** How many tasks a worker runs at once. */
export const DEFAULT_CONCURRENCY = 10;

/**
 * A worker's pause before connecting again after its stream broke: its bound starts at the first and
 * doubles up to the last, and each pause is drawn at random from the upper half of the bound (jitter).
 */
export const DEFAULT_RECONNECT: Readonly<{ initialMs: number; maxMs: number }> = Object.freeze({ initialMs: 100, maxMs: 5_000 });

/** How long Worker.stop() lets running handlers finish before it aborts them. */
export const DEFAULT_STOP_GRACE_MS = 30_000;

/**
 * How long Worker.stop() waits for the handlers it aborted to end. Those still running then (they ignore
 * their signal) are left behind without their finishes: their tasks go back to the queue, the attempt
 * counted, when the stream ends.
 */
export const DEFAULT_STOP_ABORT_WAIT_MS = 5_000;

/** How often a worker sends a heartbeat when the server's welcome does not say. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 10_000;

/** How long a task's temp directory is kept after the task finishes, unless setTempExpiration says otherwise. */
export const DEFAULT_TEMP_TTL_MS = 3_600_000;

/**
 * watch() and result() across broken connections: the tries in a row without an event before giving
 * up (about 15 s in all), and the pause between them, doubling from the first to the last.
 */
export const DEFAULT_WATCH_RESUME: Readonly<{ maxAttempts: number; initialMs: number; maxMs: number }> = Object.freeze({
  maxAttempts: 8,
  initialMs: 100,
  maxMs: 2_000,
});

/** The largest result a server keeps, as JSON; a worker fails an attempt whose result is larger. */
export const MAX_RESULT_BYTES = LIMITS.resultBytes;

/** The built-in hourly task the server schedules; every SDK worker handles it for its own storage root. */
export { TEMP_CLEANUP_TYPE };
