/**
 * The config file (TASKQ_CONFIG): its queues, task types, schedules, limits and auth tokens, each
 * section validated with every problem named (config.ts gathers them with the environment's).
 */
import { readFileSync } from "node:fs";
import {
  DEFAULT_TIME_ZONE,
  cronParse,
  type JsonObject,
  type QueueSettings,
  type RateLimit,
  type ScheduleConfig,
  type TaskTypeSettings,
} from "./engine/index.js";
import { ROLES, tokenDigest, type AuthToken, type Role } from "./rpc/auth.js";

export interface ConfigFile {
  queues: Record<string, QueueSettings>;
  taskTypes: Record<string, TaskTypeSettings>;
  globalMaxWorkers: number | null;
  historyRetentionDays: number | null;
  schedules: ScheduleConfig[];
  authTokens: AuthToken[];
}

export const emptyConfigFile = (): ConfigFile => ({
  queues: {},
  taskTypes: {},
  globalMaxWorkers: null,
  historyRetentionDays: null,
  schedules: [],
  authTokens: [],
});

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/;

/**
 * Reads the TASKQ_CONFIG file: every section checked, every problem added to `problems`; schedules may
 * name the `builtinQueues` besides the file's own.
 */
export function readConfigFile(file: string, builtinQueues: string[], problems: string[]): ConfigFile {
  const out = emptyConfigFile();
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    problems.push(`TASKQ_CONFIG: cannot read ${file}: ${(err as Error).message}`);
    return out;
  }
  const top = (parsed ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (!TOP_LEVEL_KEYS.includes(key)) problems.push(`${file}: "${key}" is not a known setting (${TOP_LEVEL_KEYS.join(", ")})`);
  }
  const topLevel = integers(file, "", top, TOP_LEVEL_SETTINGS, problems, false);
  out.globalMaxWorkers = topLevel.globalMaxWorkers ?? null;
  out.historyRetentionDays = topLevel.historyRetentionDays ?? null;
  for (const [name, settings] of section(file, top, "queues", problems)) {
    out.queues[name] = queueFromFile(file, name, settings, problems);
  }
  for (const [name, settings] of section(file, top, "task_types", problems)) {
    out.taskTypes[name] = integers(file, `task_types.${name}`, settings, TASK_TYPE_SETTINGS, problems);
  }
  const queueNames = new Set([...builtinQueues, ...Object.keys(out.queues)]);
  for (const [name, raw] of section(file, top, "schedules", problems)) {
    const schedule = scheduleFromFile(file, name, raw, queueNames, problems);
    if (schedule) out.schedules.push(schedule);
  }
  out.authTokens = authFromFile(file, top.auth, problems);
  return out;
}

const TOP_LEVEL_KEYS = ["queues", "task_types", "schedules", "global_max_workers", "history_retention_days", "auth"];

/**
 * `"auth": { "tokens": [{ "name": "ci", "role": "client", "token": "..." }] }`; instead of `token`, a
 * `sha256` (hex) of it keeps the secret itself out of the file.
 */
function authFromFile(file: string, raw: unknown, problems: string[]): AuthToken[] {
  if (raw === undefined) return [];
  const tokens = (raw as { tokens?: unknown } | null)?.tokens;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || !Array.isArray(tokens)) {
    problems.push(`${file}: auth must be { "tokens": [...] }`);
    return [];
  }
  for (const key of Object.keys(raw)) if (key !== "tokens") problems.push(`${file}: auth.${key} is not a known setting`);
  const out: AuthToken[] = [];
  const names = new Set<string>();
  for (const [i, entry] of (tokens as unknown[]).entries()) {
    const at = `${file}: auth.tokens[${i}]`;
    if (typeof entry !== "object" || entry === null) {
      problems.push(`${at} must be an object`);
      continue;
    }
    const before = problems.length;
    const t = entry as Record<string, unknown>;
    const { name, role, token, sha256 } = t;
    if (typeof name !== "string" || !NAME.test(name)) problems.push(`${at}.name must be a name (letters, digits, . _ : / -)`);
    else if (names.has(name)) problems.push(`${at}.name: "${name}" is used twice`);
    else names.add(name);
    if (!ROLES.includes(role as Role)) problems.push(`${at}.role must be one of ${ROLES.join(", ")}`);
    if ((token === undefined) === (sha256 === undefined)) problems.push(`${at}: set exactly one of token and sha256`);
    if (token !== undefined && (typeof token !== "string" || token.length < 16 || /\s/.test(token))) {
      problems.push(`${at}.token must be at least 16 characters without spaces`);
    }
    if (sha256 !== undefined && (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/i.test(sha256))) {
      problems.push(`${at}.sha256 must be 64 hex digits`);
    }
    for (const key of Object.keys(t)) if (!["name", "role", "token", "sha256"].includes(key)) problems.push(`${at}.${key} is not a known setting`);
    if (problems.length > before) continue;
    const digest = typeof token === "string" ? tokenDigest(token) : Buffer.from(sha256 as string, "hex");
    out.push({ name: name as string, role: role as Role, sha256: digest });
  }
  return out;
}
const TOP_LEVEL_SETTINGS = [
  ["global_max_workers", "globalMaxWorkers", 1],
  ["history_retention_days", "historyRetentionDays", 1],
] as const;

const SCHEDULE_KEYS = ["cron", "time_zone", "type", "queue", "params", "title", "priority"];

/** One schedule of the file, or null when it has problems (each reported). */
function scheduleFromFile(
  file: string,
  name: string,
  raw: Record<string, unknown>,
  queues: Set<string>,
  problems: string[],
): ScheduleConfig | null {
  const at = `${file}: schedules.${name}`;
  const before = problems.length;
  const text = (key: string, required: boolean): string | undefined => {
    const v = raw[key];
    if (v === undefined && !required) return undefined;
    if (typeof v !== "string" || v === "") problems.push(`${at}.${key} must be ${required ? "a non-empty string" : "a string"}`);
    return typeof v === "string" ? v : undefined;
  };
  const cron = text("cron", true);
  const timeZone = text("time_zone", false);
  const type = text("type", true);
  const queue = text("queue", false);
  const title = text("title", false);
  if (cron) {
    try {
      cronParse(cron, timeZone || DEFAULT_TIME_ZONE);
    } catch (err) {
      problems.push(`${at}.cron: ${(err as Error).message}`);
    }
  }
  if (type && !NAME.test(type)) problems.push(`${at}.type: "${type}" is not a valid task type`);
  if (queue && !queues.has(queue)) problems.push(`${at}.queue: queue "${queue}" is not defined (defined: ${[...queues].sort().join(", ")})`);
  const params = raw.params ?? {};
  if (typeof params !== "object" || params === null || Array.isArray(params)) problems.push(`${at}.params must be an object`);
  const priority = raw.priority ?? 0;
  if (typeof priority !== "number" || !Number.isInteger(priority)) problems.push(`${at}.priority must be an integer`);
  for (const key of Object.keys(raw)) if (!SCHEDULE_KEYS.includes(key)) problems.push(`${at}.${key} is not a known setting`);
  if (problems.length > before) return null;
  return { name, cron: cron!, timeZone, type: type!, queue, params: params as JsonObject, title, priority: priority as number };
}

const QUEUE_SETTINGS = [
  ["max_workers", "maxWorkers", 1],
  ["max_running_per_key", "maxRunningPerKey", 1],
  ["timeout_ms", "timeoutMs", 1],
  ["retry_delay_ms", "retryDelayMs", 0],
  ["max_attempts", "maxAttempts", 1],
] as const;

/** The most characters of a concurrency key, as Dispatch takes it. */
const KEY_LENGTH = 200;

/** One queue of the file: its integer settings, how its keys share it (key_weights, urgent_priority). */
function queueFromFile(file: string, name: string, raw: Record<string, unknown>, problems: string[]): QueueSettings {
  const at = `${file}: queues.${name}`;
  const { key_weights: weights, urgent_priority: urgent, rate_limit: rate, rate_limit_per_key: keyRate, ...rest } = raw;
  const out: QueueSettings = integers(file, `queues.${name}`, rest, QUEUE_SETTINGS, problems);
  if (rate !== undefined) out.rateLimit = rateLimitFromFile(`${at}.rate_limit`, rate, problems);
  if (keyRate !== undefined) out.rateLimitPerKey = rateLimitFromFile(`${at}.rate_limit_per_key`, keyRate, problems);
  if (urgent !== undefined) {
    if (typeof urgent !== "number" || !Number.isInteger(urgent) || urgent < 1 || urgent > 2 ** 31 - 1) {
      problems.push(`${at}.urgent_priority must be an integer priority from 1 to 2147483647`);
    } else out.urgentPriority = urgent;
  }
  if (weights !== undefined) {
    if (typeof weights !== "object" || weights === null || Array.isArray(weights)) {
      problems.push(`${at}.key_weights must be an object of concurrency key → weight`);
    } else {
      const before = problems.length;
      for (const [key, weight] of Object.entries(weights)) {
        if (key === "" || key.length > KEY_LENGTH || key.includes("\0")) {
          problems.push(`${at}.key_weights: "${key.slice(0, 40)}" is not a concurrency key (1 to ${KEY_LENGTH} characters, no NUL)`);
        }
        if (typeof weight !== "number" || !Number.isInteger(weight) || weight < 1 || weight > 1_000) {
          problems.push(`${at}.key_weights.${key.slice(0, 40)} must be an integer from 1 to 1000`);
        }
      }
      if (problems.length === before) out.keyWeights = weights as Record<string, number>;
    }
  }
  return out;
}

const TASK_TYPE_SETTINGS = [["timeout_ms", "timeoutMs", 1]] as const;

/** `{ "tasks": N, "per_ms": T, "burst": B }`: N starts per T ms, at most B at once (default 1). */
function rateLimitFromFile(at: string, raw: unknown, problems: string[]): RateLimit | undefined {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    problems.push(`${at} must be { "tasks": N, "per_ms": T } with an optional "burst"`);
    return undefined;
  }
  const r = raw as Record<string, unknown>;
  const before = problems.length;
  const int = (key: string, min: number, max: number, fallback?: number): number => {
    const v = r[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) problems.push(`${at}.${key} must be an integer from ${min} to ${max}`);
    return v as number;
  };
  const limit = { tasks: int("tasks", 1, 1_000_000), perMs: int("per_ms", 1, 86_400_000), burst: int("burst", 1, 1_000_000, 1) };
  for (const key of Object.keys(r)) if (!["tasks", "per_ms", "burst"].includes(key)) problems.push(`${at}.${key} is not a known setting`);
  return problems.length === before ? limit : undefined;
}

/** The named entries of one section of the file: an object of objects, with valid names. */
function section(file: string, top: Record<string, unknown>, key: string, problems: string[]): [string, Record<string, unknown>][] {
  const value = top[key] ?? {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push(`${file}: "${key}" must be an object`);
    return [];
  }
  return Object.entries(value as Record<string, unknown>).map(([name, raw]) => {
    if (!NAME.test(name)) problems.push(`${file}: ${key} name "${name}" is not valid`);
    return [name, (raw ?? {}) as Record<string, unknown>];
  });
}

/** Reads the integer settings `known` from `raw`, reporting wrong values and unknown keys. */
function integers<F extends string>(
  file: string,
  path: string,
  raw: Record<string, unknown>,
  known: readonly (readonly [string, F, number])[],
  problems: string[],
  strict = true,
): Partial<Record<F, number>> {
  const at = (key: string) => (path ? `${path}.${key}` : key);
  const out: Partial<Record<F, number>> = {};
  for (const [key, field, min] of known) {
    const v = raw[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) problems.push(`${file}: ${at(key)} must be an integer ≥ ${min}`);
    else out[field] = v;
  }
  for (const key of strict ? Object.keys(raw) : []) {
    if (!known.some(([k]) => k === key)) problems.push(`${file}: ${at(key)} is not a known setting`);
  }
  return out;
}
