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
  type QueueSettings,
  type ScheduleConfig,
  type TaskTypeSettings,
} from "./engine/index.js";
import { EMBEDDED_DEFAULT_PORT } from "./embedded.js";
import { emptyConfigFile, readConfigFile } from "./config-file.js";
import type { AuthToken } from "./rpc/auth.js";

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
  const file = src.TASKQ_CONFIG ? readConfigFile(src.TASKQ_CONFIG, Object.keys(BUILTIN_QUEUES), problems) : emptyConfigFile();
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
