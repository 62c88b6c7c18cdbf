/**
 * One taskq server replica, assembled: database pool, migrations, engine, listening server.
 * main.ts runs one from the environment; tests run several in one process.
 */
import pg from "pg";
import type { Logger } from "pino";
import type { Clock } from "./engine/clock.js";
import { Engine } from "./engine/engine.js";
import { retryWhileUnreachable } from "./engine/errors.js";
import { migrate } from "./engine/migrate.js";
import { Metrics } from "./metrics.js";
import { dashboardFiles } from "./dashboard.js";
import { listen, type RunningServer } from "./rpc/server.js";
import type { ServerConfig } from "./config.js";

/**
 * Settings for every taskq connection. JIT off: the claim statement's cost estimate grows with the
 * queue, and past Postgres's jit_above_cost each claim spent about 1.1 s compiling itself (with a
 * million pending tasks, measured with EXPLAIN ANALYZE: 1,134 ms with JIT, 5.5 ms without). A queue's
 * statements are short; compiling them never pays.
 */
export const SESSION_OPTIONS = "-c jit=off";

/** How long the health probe waits for the database; a new LISTEN connection, too. */
export const DATABASE_CONNECT_TIMEOUT_MS = 3_000;

/** Runs `fn`; while the database cannot be reached, waits and tries again (a replica may start before its database). */
function whenDatabaseAnswers<T>(fn: () => Promise<T>, log: Logger): Promise<T> {
  return retryWhileUnreachable(fn, {
    minMs: 250,
    maxMs: 5_000,
    onRetry: (err, retryInMs) => log.warn({ err: err.message, retryInMs }, "database unreachable; waiting for it"),
  });
}

/** True when the database answers a trivial query within `ms`. */
function answersWithin(pool: pg.Pool, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const answered = pool.query("select 1").then(() => true, () => false);
  return Promise.race([answered, late]).finally(() => clearTimeout(timer));
}

export interface Replica {
  engine: Engine;
  server: RunningServer;
  pool: pg.Pool;
  /** Graceful shutdown: running tasks get `graceMs` to finish, then go back to the queue. */
  stop(opts?: { graceMs?: number }): Promise<void>;
}

export async function startReplica(
  config: ServerConfig & { databaseUrl: string },
  log: Logger,
  opts: { clock?: Clock } = {},
): Promise<Replica> {
  // No connectionTimeoutMillis here: in node-postgres it also bounds the wait for a free connection, and
  // a burst of calls queued behind a busy pool must not fail for that. A stopped database refuses
  // connections at once, so calls still fail fast (UNAVAILABLE); the health probe bounds its own wait.
  const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 20, application_name: "taskq", options: SESSION_OPTIONS });
  pool.on("error", (err) => log.warn({ err: err.message }, "idle database connection failed"));
  const applied = await whenDatabaseAnswers(() => migrate(pool), log);
  if (applied.length > 0) log.info({ applied }, "database migrated");
  const metrics = new Metrics();
  const newEngine = () => new Engine({
    meter: metrics,
    pool,
    listenConnection: { connectionString: config.databaseUrl, application_name: "taskq-listen", connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS, options: SESSION_OPTIONS },
    log,
    queues: config.queues,
    taskTypes: config.taskTypes,
    globalMaxWorkers: config.globalMaxWorkers,
    schedules: config.schedules,
    historyRetentionDays: config.historyRetentionDays,
    builtinSchedules: config.builtinSchedules,
    clock: opts.clock,
    pollIntervalMs: config.pollIntervalMs,
    staleCheckMs: config.staleCheckMs,
    cancelGraceMs: config.cancelGraceMs,
    defaultTimeoutMs: config.defaultTimeoutMs,
  });
  // The database may go away between the migration and the start: start a fresh engine once it is back.
  const engine = await whenDatabaseAnswers(async () => {
    const e = newEngine();
    try {
      await e.start();
      return e;
    } catch (err) {
      await e.stop().catch(() => {});
      throw err;
    }
  }, log);
  const databaseAnswers = () => answersWithin(pool, DATABASE_CONNECT_TIMEOUT_MS);
  const probe = () => (engine.draining ? Promise.resolve(false) : databaseAnswers());
  const server = await listen(engine, log, {
    host: config.host,
    port: config.port,
    probe,
    authTokens: config.authTokens,
    tls: config.tls,
    pages: {
      "/metrics": async () => ({ contentType: "text/plain; version=0.0.4; charset=utf-8", body: await metrics.render(engine, databaseAnswers) }),
    },
    publicFiles: await dashboardFiles(log),
  });
  return {
    engine,
    server,
    pool,
    async stop(opts = {}) {
      await engine.stop(opts);
      await server.close();
      await pool.end();
    },
  };
}
