/**
 * What the server makes of a worker's messages before anything is written: the hello, a finish's
 * outcome, log steps and status values checked and converted to the engine's terms, and the in-band
 * rejections (RejectReason) a message about a lease gets when it cannot be taken. worker-service.ts
 * runs the stream; everything here is a pure function of one message.
 */
import type { Duration, Value } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { RejectReason, TEMP_CLEANUP_TYPE, type Finish, type Hello } from "@taskq/protocol";
import type { JsonValue, Outcome, WorkerHello } from "../engine/index.js";
import { valueFromPb } from "./convert.js";
import * as v from "./validate.js";

/** Task types of the server's own maintenance; workers declare only TEMP_CLEANUP_TYPE among them. */
const RESERVED_PREFIX = "taskq.";

/** A snooze's delay, or why it cannot be taken. */
export function snoozeDelayMs(delay: Duration | undefined): number | { problem: string } {
  try {
    return v.duration("snooze.delay", delay, { min: 0 }) ?? 0;
  } catch (err) {
    return { problem: (err as Error).message };
  }
}

/** A finish the server records as a failed attempt instead of as sent, saying why (for FinishAck.error). */
export function refusedOutcome(why: string): { outcome: Outcome; error: string } {
  const error = `the worker's finish was refused: ${why}`;
  return { outcome: { kind: "retry", error, delayMs: null }, error };
}

/**
 * The outcome to record for a finish. One that cannot be recorded as sent becomes a failed attempt
 * saying why (`error`, for FinishAck.error), and the task's retry policy applies: another attempt while
 * attempts remain, else FAILED.
 */
export function outcomeFromPb(f: Finish): { outcome: Outcome; error: string } {
  const recorded = (outcome: Outcome) => ({ outcome, error: "" });
  const refused = refusedOutcome;
  switch (f.outcome.case) {
    case "success": {
      const json = jsonFromPb(f.outcome.value.result);
      if (json.problem) return refused(`result: ${json.problem.reason}`);
      const bytes = Buffer.byteLength(json.text);
      if (bytes > v.LIMITS.resultBytes) return refused(`result: ${bytes} bytes, larger than the limit of ${v.LIMITS.resultBytes}`);
      return recorded({ kind: "success", result: json.value });
    }
    case "failure":
      return recorded({ kind: "failure", error: errorText(f.outcome.value.error) });
    case "retry": {
      let delayMs: number | undefined;
      try {
        delayMs = v.duration("retry.delay", f.outcome.value.delay, { min: 0 });
      } catch (err) {
        return refused((err as Error).message);
      }
      return recorded({ kind: "retry", error: errorText(f.outcome.value.error), delayMs: delayMs ?? null });
    }
    default:
      return refused("outcome: required (success, failure, retry, decline or snooze)");
  }
}

/** Why a message about a lease changed nothing: for people, and for the worker's code. */
export interface Rejection {
  reason: string;
  code: RejectReason;
}

export const NOT_HELD: Rejection = { reason: "this session does not hold that lease", code: RejectReason.NOT_HELD };
export const NOT_HELD_OR_INTERRUPTED: Rejection = {
  reason: "this session does not hold that lease, or the task is being interrupted (its grace period is not extended)",
  code: RejectReason.NOT_HELD,
};
export const invalid = (reason: string): Rejection => ({ reason, code: RejectReason.INVALID });
export const limit = (reason: string): Rejection => ({ reason, code: RejectReason.LIMIT });

/**
 * The lease a message names, its token in canonical form (tokens are compared as stored, in lower
 * case), or why the ids cannot name a lease.
 */
export function fence(taskId: string, leaseToken: string): { token: string } | { problem: Rejection } {
  try {
    v.taskId("task_id", taskId);
    return { token: v.leaseToken("lease_token", leaseToken) };
  } catch (err) {
    return { problem: invalid((err as Error).message) };
  }
}

/**
 * A google.protobuf.Value as JSON, with its text, or why it is not JSON that can be stored: NaN,
 * infinities and a Value with no kind have no JSON form, and Postgres cannot store a NUL character.
 */
export function jsonFromPb(value: Value | undefined): { value: JsonValue; text: string; problem?: undefined } | { value?: undefined; problem: Rejection } {
  let json: JsonValue;
  try {
    json = valueFromPb(value);
  } catch {
    return { problem: invalid("value: not JSON (NaN, an infinity, or a Value with no kind)") };
  }
  const text = JSON.stringify(json ?? null);
  if (v.jsonHasNul(text)) return { problem: invalid("value: holds a NUL character (U+0000), which cannot be stored") };
  return { value: json, text };
}

/** An error text as stored: cut to the log step limit, NUL characters (which cannot be stored) replaced. */
const errorText = (text: string) => v.withoutNul(text.slice(0, v.LIMITS.logMessageLength));

export function logStepProblem(text: string): Rejection | null {
  if (text.length > v.LIMITS.logMessageLength) return limit(`message: longer than ${v.LIMITS.logMessageLength} characters`);
  if (text.includes("\0")) return invalid("message: holds a NUL character (U+0000), which cannot be stored");
  return null;
}

export function statusValueSizeProblem(text: string): Rejection | null {
  const bytes = Buffer.byteLength(text);
  return bytes > v.LIMITS.statusValueBytes ? limit(`value: ${bytes} bytes, larger than the limit of ${v.LIMITS.statusValueBytes}`) : null;
}

export function statusKeyProblem(key: string): Rejection | null {
  if (key === "") return invalid("key: required");
  if (key.length > v.LIMITS.statusValueKeyLength) return limit(`key: longer than ${v.LIMITS.statusValueKeyLength} characters`);
  if (key.includes("\0")) return invalid("key: holds a NUL character (U+0000), which cannot be stored");
  return null;
}

export function helloFromPb(h: Hello): WorkerHello {
  try {
    const workerName = v.text("hello.worker_name", h.workerName, v.LIMITS.nameLength) || "worker";
    if (h.taskTypes.length === 0) throw new Error("hello.task_types: at least one task type is required");
    const taskTypes = new Map<string, number | null>();
    const schedules: WorkerHello["schedules"] = [];
    h.taskTypes.forEach((t, i) => {
      const field = `hello.task_types[${i}]`;
      const name = v.name(`${field}.name`, t.name, true);
      if (name.startsWith(RESERVED_PREFIX) && name !== TEMP_CLEANUP_TYPE) {
        throw new Error(`${field}.name: "${name}": names starting with "${RESERVED_PREFIX}" are the server's own, except ${TEMP_CLEANUP_TYPE}`);
      }
      if (taskTypes.has(name)) throw new Error(`${field}.name: "${name}" is declared twice`);
      taskTypes.set(name, v.duration(`${field}.timeout`, t.timeout, { min: 1 }) ?? null);
      if (t.schedule) schedules.push({ type: name, ...v.cron(`${field}.schedule`, t.schedule, t.timeZone) });
      else if (t.timeZone) throw new Error(`${field}.time_zone: only meaningful with a schedule`);
    });
    const queues = h.queues.map((q, i) => v.name(`hello.queues[${i}]`, q, true));
    return { workerName, concurrency: h.concurrency, taskTypes, queues, schedules };
  } catch (err) {
    throw new ConnectError((err as Error).message, Code.InvalidArgument);
  }
}

