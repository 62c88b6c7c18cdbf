/**
 * Request validation at the edge. Each function either returns engine input or throws an
 * invalid_argument EngineError whose message starts with the offending field, so a bad request is
 * refused before anything is written.
 */
import { fromJson, toBinary } from "@bufbuild/protobuf";
import { StructSchema, durationMs, timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { BULK_LIMIT_MAX, DEFAULT_TIME_ZONE, cronParse, invalidArgument, type DispatchInput, type JsonObject, type TraceContext } from "../engine/index.js";
import type { TaskFilter as EngineTaskFilter, TaskStatus as EngineStatus } from "../engine/index.js";
import { LIMITS, Origin, RetryBackoff, TaskStatus, bytesBound, type DispatchRequest, type TaskFilter } from "@taskq/protocol";
import { STATUS_FROM_PB } from "./convert.js";

export { LIMITS };

const INT8_MAX = 9223372036854775807n;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** The most task ids a filter may name (a selection made in the dashboard, one page at most). */
const FILTER_IDS_MAX = 500;
const STATS_WINDOW_DEFAULT_MS = 3_600_000;
const STATS_WINDOW_MAX_MS = 86_400_000;

/** Type and queue names: letters, digits and . _ : / - (what handler registries use). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]*$/;

export function taskId(field: string, value: string): string {
  if (!/^[1-9][0-9]{0,18}$/.test(value) || BigInt(value) > INT8_MAX) {
    throw invalidArgument(`${field}: "${truncate(value)}" is not a task id (a positive decimal integer)`);
  }
  return value;
}

export function leaseToken(field: string, value: string): string {
  if (!UUID.test(value)) throw invalidArgument(`${field}: "${truncate(value)}" is not a lease token`);
  return value.toLowerCase();
}

export function name(field: string, value: string, required: boolean): string {
  if (value === "") {
    if (required) throw invalidArgument(`${field}: required`);
    return value;
  }
  if (value.length > LIMITS.nameLength) throw invalidArgument(`${field}: longer than ${LIMITS.nameLength} characters`);
  if (!NAME.test(value)) throw invalidArgument(`${field}: "${truncate(value)}" may hold only letters, digits and . _ : / -`);
  return value;
}

export function text(field: string, value: string, max: number): string {
  if (value.length > max) throw invalidArgument(`${field}: longer than ${max} characters`);
  if (value.includes("\0")) throw invalidArgument(`${field}: holds a NUL character (U+0000), which cannot be stored`);
  return value;
}

/** Whether JSON text holds an escaped NUL character ("\u0000" not preceded by an escaping backslash). */
export function jsonHasNul(json: string): boolean {
  for (let at = json.indexOf("\\u0000"); at !== -1; at = json.indexOf("\\u0000", at + 1)) {
    let backslashes = 0;
    while (json[at - 1 - backslashes] === "\\") backslashes++;
    if (backslashes % 2 === 0) return true;
  }
  return false;
}

/** `text` with each NUL character, which Postgres cannot store, replaced by U+FFFD. */
export const withoutNul = (text: string) => (text.includes("\0") ? text.replaceAll("\0", "\uFFFD") : text);

export function duration(field: string, d: Duration | undefined, opts: { min: number }): number | undefined {
  if (!d) return undefined;
  if (d.nanos < -999_999_999 || d.nanos > 999_999_999 || (d.seconds > 0n && d.nanos < 0) || (d.seconds < 0n && d.nanos > 0)) {
    throw invalidArgument(`${field}: not a valid duration`);
  }
  const ms = durationMs(d);
  if (!Number.isFinite(ms) || ms < opts.min || ms > LIMITS.durationMs) {
    throw invalidArgument(`${field}: must be between ${opts.min} ms and ${LIMITS.durationMs / 86_400_000} days`);
  }
  return Math.round(ms);
}

export function timestamp(field: string, t: Timestamp | undefined): Date | undefined {
  if (!t) return undefined;
  const date = timestampDate(t);
  if (t.nanos < 0 || t.nanos > 999_999_999 || Number.isNaN(date.getTime()) || date.getUTCFullYear() > 9999 || date.getUTCFullYear() < 1) {
    throw invalidArgument(`${field}: not a valid timestamp`);
  }
  return date;
}

export function enumValue<E extends number>(field: string, value: E, allowed: Record<string, E | string>): E {
  if (!Object.values(allowed).includes(value)) throw invalidArgument(`${field}: unknown value ${value}`);
  return value;
}

/** A 5-field cron expression and its time zone (empty: UTC), both checked by parsing. */
export function cron(field: string, expression: string, timeZone: string): { cron: string; timeZone: string } {
  const zone = timeZone || DEFAULT_TIME_ZONE;
  try {
    cronParse(expression, zone);
  } catch (err) {
    throw invalidArgument(`${field}: ${(err as Error).message}`);
  }
  return { cron: expression.trim(), timeZone: zone };
}

export function pageSize(field: string, value: number): number {
  if (value > LIMITS.pageSize) throw invalidArgument(`${field}: at most ${LIMITS.pageSize}`);
  return value === 0 ? 50 : value;
}

/** Statuses of a filter, each one of `allowed`. */
export function statuses(field: string, values: TaskStatus[], allowed: readonly EngineStatus[]): EngineStatus[] {
  return values.map((s, i) => {
    const status = STATUS_FROM_PB.get(s);
    if (!status || !allowed.includes(status)) {
      const names = allowed.map((a) => a.toUpperCase()).join(", ");
      throw invalidArgument(`${field}[${i}]: ${TaskStatus[s] ?? s} is not allowed here (allowed: ${names})`);
    }
    return status;
  });
}

/** A bulk action's filter, its statuses among `allowed`; at least one field must be set. */
export function taskFilter(field: string, f: TaskFilter | undefined, allowed: readonly EngineStatus[]): EngineTaskFilter {
  const origin = enumValue(`${field}.origin`, f?.origin ?? Origin.UNSPECIFIED, Origin);
  const filter: EngineTaskFilter = {
    queue: name(`${field}.queue`, f?.queue ?? "", false) || null,
    type: name(`${field}.type`, f?.type ?? "", false) || null,
    typePrefix: name(`${field}.type_prefix`, f?.typePrefix ?? "", false) || null,
    ids: taskIds(`${field}.ids`, f?.ids ?? []),
    statuses: statuses(`${field}.statuses`, f?.statuses ?? [], allowed),
    createdAfter: timestamp(`${field}.created_after`, f?.createdAfter) ?? null,
    createdBefore: timestamp(`${field}.created_before`, f?.createdBefore) ?? null,
    origin: origin === Origin.USER ? "user" : origin === Origin.SYSTEM ? "system" : null,
  };
  const empty =
    filter.queue === null &&
    filter.type === null &&
    filter.typePrefix === null &&
    filter.ids.length === 0 &&
    filter.statuses.length === 0 &&
    !filter.createdAfter &&
    !filter.createdBefore &&
    filter.origin === null;
  if (empty) throw invalidArgument(`${field}: set at least one field (to act on every task, name the statuses)`);
  return filter;
}

/** A selection of task ids: at most FILTER_IDS_MAX, each a task id. */
function taskIds(field: string, ids: string[]): string[] {
  if (ids.length > FILTER_IDS_MAX) throw invalidArgument(`${field}: at most ${FILTER_IDS_MAX} ids`);
  return ids.map((id, i) => taskId(`${field}[${i}]`, id));
}

/** How far back GetStats reaches: one hour unless asked, at most STATS_WINDOW_MAX_MS. */
export function statsWindow(field: string, d: Duration | undefined): number {
  const ms = d ? durationMs(d) : 0;
  if (!Number.isFinite(ms) || ms < 0 || ms > STATS_WINDOW_MAX_MS) throw invalidArgument(`${field}: must be between 0 and 24 hours`);
  return ms === 0 ? STATS_WINDOW_DEFAULT_MS : ms;
}

/** The most tasks a bulk action may act on: 1 to BULK_LIMIT_MAX; 0 means BULK_LIMIT_MAX. */
export function bulkLimit(field: string, value: number): number {
  if (value > BULK_LIMIT_MAX) throw invalidArgument(`${field}: at most ${BULK_LIMIT_MAX}`);
  return value === 0 ? BULK_LIMIT_MAX : value;
}

/** A dispatch as the engine takes it, with the trace context of the call that made it (null: none). */
export function dispatchRequest(r: DispatchRequest, prefix: string, trace: TraceContext | null): DispatchInput {
  const f = (field: string) => prefix + field;
  const params = (r.params ?? {}) as JsonObject;
  const json = JSON.stringify(params);
  if (Buffer.byteLength(json) > LIMITS.paramsBytes) {
    throw invalidArgument(`${f("params")}: larger than ${LIMITS.paramsBytes} bytes`);
  }
  if (jsonHasNul(json)) throw invalidArgument(`${f("params")}: holds a NUL character (U+0000), which cannot be stored`);
  // Protobuf may take up to 6 times the JSON's size (small numbers in a list); a lease must stay
  // inside what a worker's gRPC library accepts.
  if (bytesBound(json.length, 0) > LIMITS.paramsEncodedBytes && toBinary(StructSchema, fromJson(StructSchema, params)).length > LIMITS.paramsEncodedBytes) {
    throw invalidArgument(`${f("params")}: larger than ${LIMITS.paramsEncodedBytes} bytes in protobuf encoding`);
  }
  const origin = enumValue(f("origin"), r.origin, Origin);
  const backoff = enumValue(f("retry_backoff"), r.retryBackoff, RetryBackoff);
  if (r.maxAttempts !== undefined && (r.maxAttempts < 1 || r.maxAttempts > LIMITS.maxAttempts)) {
    throw invalidArgument(`${f("max_attempts")}: must be between 1 and ${LIMITS.maxAttempts}`);
  }
  if (r.delay && r.runAt) throw invalidArgument(`${f("run_at")}: set delay or run_at, not both`);
  const delayMs = duration(f("delay"), r.delay, { min: 0 });
  return {
    type: name(f("type"), r.type, true),
    queue: name(f("queue"), r.queue, false) || undefined,
    params,
    title: text(f("title"), r.title, LIMITS.titleLength),
    priority: r.priority,
    origin: origin === Origin.SYSTEM ? "system" : "user",
    initiator: text(f("initiator"), r.initiator, LIMITS.nameLength),
    nodeId: text(f("node_id"), r.nodeId, LIMITS.nameLength),
    timeoutMs: duration(f("timeout"), r.timeout, { min: 1 }),
    maxAttempts: r.maxAttempts,
    retryDelayMs: duration(f("retry_delay"), r.retryDelay, { min: 0 }),
    retryBackoff: backoff === RetryBackoff.EXPONENTIAL ? "exponential" : backoff === RetryBackoff.FIXED ? "fixed" : undefined,
    runAt: timestamp(f("run_at"), r.runAt),
    delayMs,
    idempotencyKey: text(f("idempotency_key"), r.idempotencyKey, LIMITS.nameLength) || undefined,
    concurrencyKey: text(f("concurrency_key"), r.concurrencyKey, LIMITS.nameLength) || undefined,
    trace,
  };
}

const truncate = (s: string) => (String(s).length > 40 ? `${String(s).slice(0, 40)}…` : String(s));
