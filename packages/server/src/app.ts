/**
 * One taskq server replica, assembled: database pool, migrations, engine, listening server.
 * main.ts runs one from the environment; tests run several in one process.
 */
import pg from "pg";
import type { Logger } from "pino";
import { CLOCK_OFFSET_WORTH_LOGGING_MS, DatabaseClock, Engine, migrate, retryWhileUnreachable, type Clock } from "./engine/index.js";
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
const SESSION_OPTIONS = "-c jit=off";

/** How long the health probe waits for the database. */
const HEALTH_PROBE_TIMEOUT_MS = 3_000;

/** The bounds on waiting for the database (config.ts has the defaults and why). */
interface DatabaseTimeouts {
  queryMs: number;
  connectMs: number;
  /** Postgres ends a session idle inside a transaction for this long (see idleInTransactionMs). */
  idleInTransactionMs: number;
}

/**
 * A transaction of the replica left idle this long is rolled back by Postgres (its connection ends):
 * S/4. taskq's transactions are a few statements sent back to back (a claim under the queue-limit
 * locks, a schedule firing), so one left idle means its replica stopped (a pause, a cut link) in the
 * middle. Until it resumed, the rows it claimed would stay locked and invisible to every reaper, and its
 * advisory limit locks would hold up every other replica's claims in limited queues.
 */
const idleInTransactionMs = (staleCheckMs: number) => Math.max(100, Math.floor(staleCheckMs / 4));

/**
 * A pool's connection class with the two bounds node-postgres leaves to its caller.
 *
 * Connecting: `connectionTimeoutMillis` given to pg.Pool would also bound the wait for a free
 * connection, and a burst of calls queued behind a busy pool must not fail for that. Given to each
 * client instead, it bounds only the TCP connect, TLS and the startup exchange.
 *
 * A statement past `query_timeout` ("Query read timeout"): node-postgres answers the caller but leaves
 * the connection as it was, with the statement still in flight. Whatever is sent on it next waits behind
 * that statement; over a stalled link, for the rest of the stall. pool.query discards a connection whose
 * statement failed, but a client checked out for a transaction is handed back after its rollback, which
 * would first wait out a whole timeout of its own. So the client closes itself at once: later
 * statements on it fail at once ("Client was closed"), the pool drops it when it comes back (pg-pool
 * discards a released client that is ending), and Postgres rolls back its open transaction.
 */
function boundedClient(connectMs: number): typeof pg.Client {
  return class BoundedClient extends pg.Client {
    private closedByTimeout = false;

    constructor(config: pg.ClientConfig) {
      super({ ...config, connectionTimeoutMillis: connectMs });
    }

    // Every form of query(): with a callback last (as pg-pool calls it), or returning a promise. (Typed
    // `never` to stand for each of pg.Client's overloads; callers see those.)
    override query(...args: unknown[]): never {
      const run = pg.Client.prototype.query as (...a: unknown[]) => unknown;
      const last = args.length - 1;
      const callback = args[last];
      if (typeof callback === "function") {
        args[last] = (err: Error | null, res: unknown) => {
          if (err) this.closeIfTimedOut(err);
          callback(err, res);
        };
        return run.apply(this, args) as never;
      }
      const result = run.apply(this, args);
      if (!(result instanceof Promise)) return result as never;
      return result.catch((err: Error) => {
        this.closeIfTimedOut(err);
        throw err;
      }) as never;
    }

    private closeIfTimedOut(err: Error): void {
      if (err.message !== "Query read timeout" || this.closedByTimeout) return;
      this.closedByTimeout = true;
      // With a statement in flight, end() destroys the socket rather than wait for a goodbye that the
      // stalled link would never carry; and an ending client raises no 'error' event when it closes.
      this.end().catch(() => {});
    }
  };
}

/** The replica's pool: every statement and every new connection bounded in time. */
function databasePool(url: string, timeouts: DatabaseTimeouts, max: number): pg.Pool {
  return new pg.Pool({
    connectionString: url,
    max,
    application_name: "taskq",
    options: `${SESSION_OPTIONS} -c idle_in_transaction_session_timeout=${timeouts.idleInTransactionMs}`,
    query_timeout: timeouts.queryMs,
    Client: boundedClient(timeouts.connectMs),
  });
}

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

/**
 * Applies the migrations on a connection of their own, with no bound on a statement: building an index
 * on a large table, or waiting for another replica's migration (an advisory lock), takes as long as it
 * takes, and a replica that is not serving yet keeps no caller waiting.
 */
async function migrateDatabase(config: ServerConfig & { databaseUrl: string }, log: Logger): Promise<void> {
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: 1,
    application_name: "taskq-migrate",
    options: SESSION_OPTIONS,
    Client: boundedClient(config.databaseConnectTimeoutMs),
  });
  pool.on("error", (err) => log.warn({ err: err.message }, "idle database connection failed"));
  try {
    const applied = await whenDatabaseAnswers(() => migrate(pool), log);
    if (applied.length > 0) log.info({ applied }, "database migrated");
  } finally {
    await pool.end();
  }
}

/**
 * The clock of task times when none is injected: the database's, so that replicas whose own clocks
 * disagree still agree on every due time, deadline and retry time (see engine/clock.ts).
 */
async function databaseClock(pool: pg.Pool, log: Logger, local?: () => number): Promise<DatabaseClock> {
  const clock = new DatabaseClock(pool, { log, local });
  const { offsetMs, roundTripMs } = await whenDatabaseAnswers(() => clock.sync(), log);
  if (Math.abs(offsetMs) > CLOCK_OFFSET_WORTH_LOGGING_MS) {
    log.info({ offsetMs: Math.round(offsetMs), roundTripMs }, "this machine's clock differs from the database's; task times follow the database");
  }
  return clock;
}

export async function startReplica(
  config: ServerConfig & { databaseUrl: string },
  log: Logger,
  opts: {
    /** The clock of task times; default: the database's (a DatabaseClock). Tests pass a ManualClock. */
    clock?: Clock;
    /** The local time a DatabaseClock is measured against; tests pass a skewed one. */
    localTime?: () => number;
  } = {},
): Promise<Replica> {
  const timeouts = {
    queryMs: config.databaseQueryTimeoutMs,
    connectMs: config.databaseConnectTimeoutMs,
    idleInTransactionMs: idleInTransactionMs(config.staleCheckMs),
  };
  const pool = databasePool(config.databaseUrl, timeouts, 20);
  pool.on("error", (err) => log.warn({ err: err.message }, "idle database connection failed"));
  await migrateDatabase(config, log);
  const ownClock = opts.clock ? null : await databaseClock(pool, log, opts.localTime);
  const metrics = new Metrics();
  const newEngine = () => new Engine({
    meter: metrics,
    pool,
    listenConnection: {
      connectionString: config.databaseUrl,
      application_name: "taskq-listen",
      options: SESSION_OPTIONS,
      connectionTimeoutMillis: timeouts.connectMs,
      query_timeout: timeouts.queryMs,
    },
    log,
    queues: config.queues,
    taskTypes: config.taskTypes,
    globalMaxWorkers: config.globalMaxWorkers,
    schedules: config.schedules,
    historyRetentionDays: config.historyRetentionDays,
    builtinSchedules: config.builtinSchedules,
    clock: opts.clock ?? ownClock!,
    pollIntervalMs: config.pollIntervalMs,
    staleCheckMs: config.staleCheckMs,
    cancelGraceMs: config.cancelGraceMs,
    defaultTimeoutMs: config.defaultTimeoutMs,
    statsIntervalMs: config.statsIntervalMs,
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
  ownClock?.start();
  const databaseAnswers = () => answersWithin(pool, HEALTH_PROBE_TIMEOUT_MS);
  const probe = () => (engine.draining ? Promise.resolve(false) : databaseAnswers());
  let server: RunningServer;
  try {
    server = await listen(engine, log, {
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
  } catch (err) {
    // The port was taken after main.ts checked it: undo the start (the engine's session and connections)
    // before the caller reports it and stops the database.
    await engine.stop();
    ownClock?.stop();
    await pool.end();
    throw err;
  }
  return {
    engine,
    server,
    pool,
    async stop(opts = {}) {
      await engine.stop(opts);
      ownClock?.stop();
      await server.close();
      await pool.end();
    },
  };
}
