/**
 * Server configuration: defaults as exported constants, validated once at start-up with every problem
 * reported together. Only the entry point (main.ts) reads the environment; it hands the values here.
 */
import { readFileSync } from "node:fs";
import {
  DEFAULT_CANCEL_GRACE_MS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_STALE_CHECK_MS,
  DEFAULT_TIMEOUT_MS,
  type QueueSettings,
} from "./engine/engine.js";
import { EMBEDDED_DEFAULT_PORT } from "./embedded.js";

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 50051;
export const DEFAULT_DATA_DIR = ".taskq-data/postgres";
export const DEFAULT_LOG_LEVEL = "info";
/** The queues every server has, whatever the config says. */
export const BUILTIN_QUEUES: Record<string, QueueSettings> = { default: {}, scheduled: {} };

export interface ServerConfig {
  host: string;
  port: number;
  /** null: start the embedded Postgres. */
  databaseUrl: string | null;
  dataDir: string;
  embeddedPort: number;
  logLevel: string;
  queues: Record<string, QueueSettings>;
  pollIntervalMs: number;
  /** A replica killed without a goodbye has its tasks recovered within this time. */
  staleCheckMs: number;
  /** How long an interrupted task's worker has to stop before the task is CANCELED without it. */
  cancelGraceMs: number;
  /** The timeout of tasks whose dispatch, type and queue set none. */
  defaultTimeoutMs: number;
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
  TASKQ_DATA_DIR?: string;
  TASKQ_EMBEDDED_PORT?: string;
  TASKQ_LOG_LEVEL?: string;
  /** Path of a JSON file: { "queues": { "<name>": { "timeout_ms", "retry_delay_ms", "max_attempts" } } }. */
  TASKQ_CONFIG?: string;
  TASKQ_POLL_INTERVAL_MS?: string;
  TASKQ_STALE_CHECK_MS?: string;
  TASKQ_CANCEL_GRACE_MS?: string;
  TASKQ_DEFAULT_TIMEOUT_MS?: string;
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
  const config: ServerConfig = {
    host: src.TASKQ_HOST || DEFAULT_HOST,
    port: int("TASKQ_PORT", DEFAULT_PORT, 0, 65535),
    databaseUrl: src.DATABASE_URL || null,
    dataDir: src.TASKQ_DATA_DIR || DEFAULT_DATA_DIR,
    embeddedPort: int("TASKQ_EMBEDDED_PORT", EMBEDDED_DEFAULT_PORT, 1, 65535),
    logLevel: src.TASKQ_LOG_LEVEL || DEFAULT_LOG_LEVEL,
    queues: { ...BUILTIN_QUEUES, ...(src.TASKQ_CONFIG ? queuesFromFile(src.TASKQ_CONFIG, problems) : {}) },
    pollIntervalMs: int("TASKQ_POLL_INTERVAL_MS", DEFAULT_POLL_INTERVAL_MS, 10, 3_600_000),
    staleCheckMs: int("TASKQ_STALE_CHECK_MS", DEFAULT_STALE_CHECK_MS, 1_000, 3_600_000),
    cancelGraceMs: int("TASKQ_CANCEL_GRACE_MS", DEFAULT_CANCEL_GRACE_MS, 0, 86_400_000),
    defaultTimeoutMs: int("TASKQ_DEFAULT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 1_000, 7 * 86_400_000),
  };
  if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(config.logLevel)) {
    problems.push(`TASKQ_LOG_LEVEL: "${config.logLevel}" is not a pino level`);
  }
  if (config.databaseUrl && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    problems.push("DATABASE_URL: must start with postgres:// or postgresql://");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function queuesFromFile(file: string, problems: string[]): Record<string, QueueSettings> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    problems.push(`TASKQ_CONFIG: cannot read ${file}: ${(err as Error).message}`);
    return {};
  }
  const queues = (parsed as { queues?: unknown })?.queues ?? {};
  if (typeof queues !== "object" || queues === null || Array.isArray(queues)) {
    problems.push(`${file}: "queues" must be an object`);
    return {};
  }
  const out: Record<string, QueueSettings> = {};
  for (const [name, raw] of Object.entries(queues as Record<string, unknown>)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._:\/-]{0,199}$/.test(name)) problems.push(`${file}: queue name "${name}" is not valid`);
    const q = (raw ?? {}) as Record<string, unknown>;
    const settings: QueueSettings = {};
    for (const [key, field, min] of [
      ["timeout_ms", "timeoutMs", 1],
      ["retry_delay_ms", "retryDelayMs", 0],
      ["max_attempts", "maxAttempts", 1],
    ] as const) {
      const v = q[key];
      if (v === undefined) continue;
      if (typeof v !== "number" || !Number.isInteger(v) || v < min) problems.push(`${file}: queues.${name}.${key} must be an integer ≥ ${min}`);
      else settings[field] = v;
    }
    for (const key of Object.keys(q)) {
      if (!["timeout_ms", "retry_delay_ms", "max_attempts"].includes(key)) problems.push(`${file}: queues.${name}.${key} is not a known setting`);
    }
    out[name] = settings;
  }
  return out;
}
