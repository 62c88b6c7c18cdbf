/**
 * Server configuration: defaults as exported constants, validated once at start-up with every problem
 * reported together. Only the entry point (main.ts) reads the environment; it hands the values here.
 */
import { readFileSync } from "node:fs";
import {
  DEFAULT_CANCEL_GRACE_MS,
  DEFAULT_HISTORY_RETENTION_DAYS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_STALE_CHECK_MS,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_STATS_INTERVAL_MS,
  DEFAULT_TIME_ZONE,
  cronParse,
  type JsonObject,
  type QueueSettings,
  type RateLimit,
  type ScheduleConfig,
  type TaskTypeSettings,
} from "./engine/index.js";
import { EMBEDDED_DEFAULT_PORT } from "./embedded.js";
import { ROLES, tokenDigest, type AuthToken, type Role } from "./rpc/auth.js";

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 50051;
export const DEFAULT_DATA_DIR = ".taskq-data/postgres";
export const DEFAULT_LOG_LEVEL = "info";
/**
 * How long a replica waits for the database to answer one statement, and to open one connection, before
 * it gives up and the call answers UNAVAILABLE. Over a link that stalls (packets neither delivered nor
 * refused) node-postgres would otherwise wait as long as the stall. Generous, so that no legitimate
 * statement is cut: claims take milliseconds (5.5 ms with a million pending tasks), ANALYZE of the
 * active table and a history-retention batch of 1,000 tasks take seconds at worst. These are the
 * defaults of Ecto/DBConnection (15 s per query, 5 s to connect), which long experience found safe.
 */
export const DEFAULT_DATABASE_QUERY_TIMEOUT_MS = 15_000;
export const DEFAULT_DATABASE_CONNECT_TIMEOUT_MS = 5_000;
/** The queues every server has, whatever the config says; the config may change their settings. */
const BUILTIN_QUEUES: Record<string, QueueSettings> = { default: {}, scheduled: { maxWorkers: 1 } };

/** The built-in queues with the config's settings laid over them, then the config's other queues. */
export function withBuiltinQueues(queues: Record<string, QueueSettings>): Record<string, QueueSettings> {
  const merged: Record<string, QueueSettings> = {};
  for (const [name, settings] of Object.entries(BUILTIN_QUEUES)) merged[name] = { ...settings, ...queues[name] };
  return { ...queues, ...merged };
}

export interface ServerConfig {
  host: string;
  port: number;
  /** null: start the embedded Postgres. */
  databaseUrl: string | null;
  /** A statement not answered within this time fails (UNAVAILABLE) and its connection is closed. */
  databaseQueryTimeoutMs: number;
  /** A new database connection not ready within this time fails (UNAVAILABLE). */
  databaseConnectTimeoutMs: number;
  dataDir: string;
  embeddedPort: number;
  logLevel: string;
  queues: Record<string, QueueSettings>;
  /** The most tasks running at once in all queues, across every worker and replica; null: no limit. */
  globalMaxWorkers: number | null;
  /** Cron schedules declared in the config file. */
  schedules: ScheduleConfig[];
  /** Finished tasks are deleted this many days after they finished. */
  historyRetentionDays: number;
  /** Whether the built-in maintenance schedules run. */
  builtinSchedules: boolean;
  /** Per task type settings; a worker's hello may declare its own timeout, which wins. */
  taskTypes: Record<string, TaskTypeSettings>;
  pollIntervalMs: number;
  /** A replica killed without a goodbye has its tasks recovered within this time. */
  staleCheckMs: number;
  /** How long an interrupted task's worker has to stop before the task is CANCELED without it. */
  cancelGraceMs: number;
  /** On SIGTERM, how long running tasks have to finish before they go back to the queue. */
  shutdownGraceMs: number;
  /** The timeout of tasks whose dispatch, type and queue set none. */
  defaultTimeoutMs: number;
  /** How often each queue's depth and finished tasks are sampled for the dashboard's charts (GetStats). */
  statsIntervalMs: number;
  /** Bearer tokens and their roles; empty: no auth (allowed on loopback, or when forced). */
  authTokens: AuthToken[];
  /** Serve TLS with this certificate and key; with a client CA, clients must present a certificate it signed. */
  tls: TlsConfig | null;
}

export interface TlsConfig {
  cert: Buffer;
  key: Buffer;
  clientCa: Buffer | null;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

/** The settings main.ts reads from the environment, as strings. */
export interface ConfigSource {
  TASKQ_HOST?: string;
  TASKQ_PORT?: string;
  DATABASE_URL?: string;
  TASKQ_DATABASE_QUERY_TIMEOUT_MS?: string;
  TASKQ_DATABASE_CONNECT_TIMEOUT_MS?: string;
  TASKQ_DATA_DIR?: string;
  TASKQ_EMBEDDED_PORT?: string;
  TASKQ_LOG_LEVEL?: string;
  /**
   * Path of a JSON file: { "queues": { "<name>": { "timeout_ms", "retry_delay_ms", "max_attempts" } },
   * "task_types": { "<type>": { "timeout_ms" } } }.
   */
  TASKQ_CONFIG?: string;
  TASKQ_POLL_INTERVAL_MS?: string;
  TASKQ_STALE_CHECK_MS?: string;
  TASKQ_CANCEL_GRACE_MS?: string;
  TASKQ_SHUTDOWN_GRACE_MS?: string;
  TASKQ_DEFAULT_TIMEOUT_MS?: string;
  TASKQ_STATS_INTERVAL_MS?: string;
  /** Overrides global_max_workers of the config file. */
  TASKQ_GLOBAL_MAX_WORKERS?: string;
  /** Overrides history_retention_days of the config file. */
  TASKQ_HISTORY_RETENTION_DAYS?: string;
  /** "off" turns the built-in maintenance schedules off; default "on". */
  TASKQ_BUILTIN_SCHEDULES?: string;
  /** PEM files: the server's certificate and key (both or neither), and a CA that client certificates must chain to. */
  TASKQ_TLS_CERT?: string;
  TASKQ_TLS_KEY?: string;
  TASKQ_TLS_CLIENT_CA?: string;
  /** "force": serve without auth on an address other than loopback. */
  TASKQ_INSECURE_NO_AUTH?: string;
}

export function loadConfig(src: ConfigSource): ServerConfig {
  const problems: string[] = [];
  const int = (name: keyof ConfigSource, fallback: number, min: number, max: number): number => {
    const raw = src[name];
    if (raw === undefined || raw === "") return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name}: "${raw}" must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  };
  const file = src.TASKQ_CONFIG ? readConfigFile(src.TASKQ_CONFIG, problems) : emptyConfigFile();
  const config: ServerConfig = {
    host: src.TASKQ_HOST || DEFAULT_HOST,
    port: int("TASKQ_PORT", DEFAULT_PORT, 0, 65535),
    databaseUrl: src.DATABASE_URL || null,
    databaseQueryTimeoutMs: int("TASKQ_DATABASE_QUERY_TIMEOUT_MS", DEFAULT_DATABASE_QUERY_TIMEOUT_MS, 100, 3_600_000),
    databaseConnectTimeoutMs: int("TASKQ_DATABASE_CONNECT_TIMEOUT_MS", DEFAULT_DATABASE_CONNECT_TIMEOUT_MS, 100, 600_000),
    dataDir: src.TASKQ_DATA_DIR || DEFAULT_DATA_DIR,
    embeddedPort: int("TASKQ_EMBEDDED_PORT", EMBEDDED_DEFAULT_PORT, 1, 65535),
    logLevel: src.TASKQ_LOG_LEVEL || DEFAULT_LOG_LEVEL,
    queues: withBuiltinQueues(file.queues),
    taskTypes: file.taskTypes,
    schedules: file.schedules,
    builtinSchedules: src.TASKQ_BUILTIN_SCHEDULES !== "off",
    historyRetentionDays: src.TASKQ_HISTORY_RETENTION_DAYS
      ? int("TASKQ_HISTORY_RETENTION_DAYS", DEFAULT_HISTORY_RETENTION_DAYS, 1, 36_500)
      : (file.historyRetentionDays ?? DEFAULT_HISTORY_RETENTION_DAYS),
    globalMaxWorkers: src.TASKQ_GLOBAL_MAX_WORKERS
      ? int("TASKQ_GLOBAL_MAX_WORKERS", 0, 1, 1_000_000)
      : file.globalMaxWorkers,
    pollIntervalMs: int("TASKQ_POLL_INTERVAL_MS", DEFAULT_POLL_INTERVAL_MS, 10, 3_600_000),
    staleCheckMs: int("TASKQ_STALE_CHECK_MS", DEFAULT_STALE_CHECK_MS, 1_000, 3_600_000),
    cancelGraceMs: int("TASKQ_CANCEL_GRACE_MS", DEFAULT_CANCEL_GRACE_MS, 0, 86_400_000),
    shutdownGraceMs: int("TASKQ_SHUTDOWN_GRACE_MS", DEFAULT_SHUTDOWN_GRACE_MS, 0, 86_400_000),
    defaultTimeoutMs: int("TASKQ_DEFAULT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 1_000, 7 * 86_400_000),
    statsIntervalMs: int("TASKQ_STATS_INTERVAL_MS", DEFAULT_STATS_INTERVAL_MS, 1_000, 3_600_000),
    authTokens: file.authTokens,
    tls: tlsFromFiles(src, problems),
  };
  if (src.TASKQ_INSECURE_NO_AUTH && src.TASKQ_INSECURE_NO_AUTH !== "force") {
    problems.push(`TASKQ_INSECURE_NO_AUTH: "${src.TASKQ_INSECURE_NO_AUTH}" must be force (or unset)`);
  }
  if (config.authTokens.length === 0 && !isLoopback(config.host) && src.TASKQ_INSECURE_NO_AUTH !== "force") {
    problems.push(
      `TASKQ_HOST: ${config.host} is reachable from other machines and no auth tokens are configured: ` +
        `add auth.tokens to the config file, or set TASKQ_INSECURE_NO_AUTH=force to serve without auth`,
    );
  }
  if (src.TASKQ_BUILTIN_SCHEDULES && !["on", "off"].includes(src.TASKQ_BUILTIN_SCHEDULES)) {
    problems.push(`TASKQ_BUILTIN_SCHEDULES: "${src.TASKQ_BUILTIN_SCHEDULES}" must be on or off`);
  }
  if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(config.logLevel)) {
    problems.push(`TASKQ_LOG_LEVEL: "${config.logLevel}" is not a pino level`);
  }
  if (config.databaseUrl && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    problems.push("DATABASE_URL: must start with postgres:// or postgresql://");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Loopback addresses, where serving without auth reaches no one but this machine. */
function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function tlsFromFiles(src: ConfigSource, problems: string[]): TlsConfig | null {
  const read = (name: "TASKQ_TLS_CERT" | "TASKQ_TLS_KEY" | "TASKQ_TLS_CLIENT_CA"): Buffer | null => {
    const file = src[name];
    if (!file) return null;
    try {
      return readFileSync(file);
    } catch (err) {
      problems.push(`${name}: cannot read ${file}: ${(err as Error).message}`);
      return null;
    }
  };
  const cert = read("TASKQ_TLS_CERT");
  const key = read("TASKQ_TLS_KEY");
  const clientCa = read("TASKQ_TLS_CLIENT_CA");
  if (!src.TASKQ_TLS_CERT !== !src.TASKQ_TLS_KEY) problems.push("TASKQ_TLS_CERT and TASKQ_TLS_KEY: set both or neither");
  if (src.TASKQ_TLS_CLIENT_CA && !src.TASKQ_TLS_CERT) problems.push("TASKQ_TLS_CLIENT_CA: needs TASKQ_TLS_CERT and TASKQ_TLS_KEY");
  return cert && key ? { cert, key, clientCa } : null;
}

interface ConfigFile {
  queues: Record<string, QueueSettings>;
  taskTypes: Record<string, TaskTypeSettings>;
  globalMaxWorkers: number | null;
  historyRetentionDays: number | null;
  schedules: ScheduleConfig[];
  authTokens: AuthToken[];
}

const emptyConfigFile = (): ConfigFile => ({
  queues: {},
  taskTypes: {},
  globalMaxWorkers: null,
  historyRetentionDays: null,
  schedules: [],
  authTokens: [],
});

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/;

function readConfigFile(file: string, problems: string[]): ConfigFile {
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
  const queueNames = new Set([...Object.keys(BUILTIN_QUEUES), ...Object.keys(out.queues)]);
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
