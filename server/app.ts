/**
 * One taskq server replica, assembled: database pool, migrations, engine, listening server.
 * main.ts runs one from the environment; tests run several in one process.
 */
import pg from "pg";
import type { Logger } from "pino";
import type { Clock } from "./engine/clock.js";
import { Engine } from "./engine/engine.js";
import { migrate } from "./engine/migrate.js";
import { listen, type RunningServer } from "./rpc/server.js";
import type { ServerConfig } from "./config.js";

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
  const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 20, application_name: "taskq" });
  pool.on("error", (err) => log.warn({ err: err.message }, "idle database connection failed"));
  const applied = await migrate(pool);
  if (applied.length > 0) log.info({ applied }, "database migrated");
  const engine = new Engine({
    pool,
    listenConnection: { connectionString: config.databaseUrl, application_name: "taskq-listen" },
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
  await engine.start();
  const probe = () => (engine.draining ? Promise.resolve(false) : pool.query("select 1").then(() => true, () => false));
  const server = await listen(engine, log, {
    host: config.host,
    port: config.port,
    probe,
    authTokens: config.authTokens,
    tls: config.tls,
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
