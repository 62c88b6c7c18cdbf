/**
 * What an attempt sends as its finish (Finish.outcome), from what its handler returned or threw, with
 * an upper bound of the message's encoded size (bytesBound):
 *
 *   returned a value             success; one over MAX_RESULT_BYTES as JSON is a retry instead
 *   threw after it was cut off   retry at once (interrupted, timed out, lease lost, worker stopping):
 *                                the task did not fail on its own
 *   threw a RetryableError       retry, after its delay held to what the protocol takes (0 to 7 days),
 *                                or the task's retry delay when it gave none
 *   threw TaskSnoozed            snooze (ctx.snooze): due again after its delay (held likewise, NaN
 *                                as 0), the attempt not counted
 *   threw anything else          failure
 *
 * The error text is never empty: the server keeps the previous attempt's error when it gets an empty
 * one, so a task would show an error from an attempt that did not end this way.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { LIMITS, bytesBound } from "@taskq/protocol";
import { MAX_RESULT_BYTES } from "../defaults.js";
import { RetryableError, TaskSnoozed } from "../errors.js";
import type { Outcome } from "./stream-session.js";

interface Finished {
  outcome: Outcome;
  /** An upper bound of the finish's encoded size. */
  bytes: number;
}

/**
 * A handler's return value as a success: undefined becomes null; a value JSON cannot hold throws. One too
 * large for the server to keep throws a RetryableError, so the attempt fails (as the server would fail
 * it) and the task's retry policy applies; sent anyway, a result past the server's message limit (4 MiB)
 * would end the whole stream, taking the worker's other tasks with it.
 */
export function successOutcome(returned: unknown): Finished {
  const text = returned === undefined ? "null" : JSON.stringify(returned);
  const result = JSON.parse(text) as JsonValue;
  const resultBytes = Buffer.byteLength(text);
  if (resultBytes > MAX_RESULT_BYTES) {
    throw new RetryableError(`result: ${resultBytes} bytes, larger than the limit of ${MAX_RESULT_BYTES}`);
  }
  return { outcome: { case: "success", value: { result } }, bytes: bytesBound(text.length, 0) };
}

/** What a handler threw as the finish; `cutOff` when its signal had aborted (see the header). */
export function errorOutcome(thrown: unknown, cutOff: boolean): Finished {
  const error = errorText(thrown);
  const bytes = bytesBound(0, error.length);
  // The server ends an interrupted task CANCELED whatever comes, and refuses a finish for an attempt that already ended.
  if (cutOff) return { outcome: { case: "retry", value: { error, delay: durationFromMs(0) } }, bytes };
  if (thrown instanceof RetryableError) return { outcome: { case: "retry", value: { error, delay: retryDelay(thrown.delayMs) } }, bytes };
  if (thrown instanceof TaskSnoozed) return { outcome: { case: "snooze", value: { delay: retryDelay(thrown.delayMs) ?? durationFromMs(0) } }, bytes: bytesBound(0, 0) };
  return { outcome: { case: "failure", value: { error } }, bytes };
}

/**
 * A RetryableError's delay as the protocol takes it, whole milliseconds from 0 to 7 days: a delay out of
 * that range is held to its nearer end rather than refused. A handler that computed one (from a
 * Retry-After far ahead, or a moment already past) still means "try again, then": refusing the error
 * where it is made would turn the handler's throw into a failure of the task, and sending it as given
 * gets the finish recorded as a failed attempt with the server's complaint for its error. NaN counts as
 * no delay given.
 */
function retryDelay(delayMs: number | undefined) {
  if (delayMs === undefined || Number.isNaN(delayMs)) return undefined;
  return durationFromMs(Math.round(Math.min(Math.max(delayMs, 0), LIMITS.durationMs)));
}

/**
 * What a handler threw, as an error text that is never empty: an Error's message, or, when it has none,
 * its name (a subclass that set none: its class's name); a string as it is; anything else described.
 * Error-like objects (an Error from another realm) count as Errors.
 */
function errorText(thrown: unknown): string {
  if (typeof thrown === "string") return thrown || "the handler threw an empty string";
  if (typeof thrown === "object" && thrown !== null && typeof (thrown as { message?: unknown }).message === "string") {
    return (thrown as { message: string }).message || errorName(thrown);
  }
  return `the handler threw a non-Error value: ${describe(thrown)}`;
}

function errorName(err: object): string {
  const { name } = err as { name?: unknown };
  if (typeof name === "string" && name !== "" && name !== "Error") return name;
  return err.constructor?.name || "Error";
}

function describe(value: unknown): string {
  if (typeof value !== "object" || value === null) return String(value);
  try {
    return JSON.stringify(value) ?? Object.prototype.toString.call(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
