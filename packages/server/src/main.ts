/**
 * `npm start`: run one taskq server. With DATABASE_URL it uses that Postgres; without, it starts the
 * embedded one, keeping its data in TASKQ_DATA_DIR.
 *
 * Start-up checks first what it can see before it creates or changes anything (TASKQ_PORT free, and
 * for the embedded Postgres its port free and its data folder usable), and reports every problem at
 * once, one line each, naming the setting that changes it; then it exits 1 (2 for an invalid
 * configuration). A problem met later (a race for a port, initdb failing) is one such line too.
 *
 * SIGINT/SIGTERM stop it gracefully: running tasks get TASKQ_SHUTDOWN_GRACE_MS to finish, then go back to
 * the queue; the embedded Postgres, which a Ctrl-C at the terminal does not reach (server/embedded.ts),
 * is stopped last. A signal during start-up stops what has started, and exits.
 */
import { ConfigError, loadConfig, type ServerConfig } from "./config.js";
import {
  EmbeddedStartError,
  embeddedProblems,
  listenError,
  startEmbeddedPostgres,
  type EmbeddedDatabase,
  type EmbeddedProblem,
} from "./embedded.js";
import { createLogger } from "./log.js";
import { startReplica, type Replica } from "./app.js";

/** The settings behind the embedded Postgres's options, and what else would do instead. */
const EMBEDDED_SETTINGS = {
  port: { name: "TASKQ_EMBEDDED_PORT", orElse: ", or DATABASE_URL to use a Postgres that is running" },
  dataDir: { name: "TASKQ_DATA_DIR", orElse: "" },
} as const;

function embeddedLine(p: EmbeddedProblem): string {
  const { name, orElse } = EMBEDDED_SETTINGS[p.option];
  return `${name}: ${p.problem}; set ${name} to ${p.instead}${orElse}`;
}

function listenLine(config: ServerConfig, err: NodeJS.ErrnoException): string {
  const at = `${config.host}:${config.port}`;
  if (err.code === "EADDRINUSE") return `TASKQ_PORT: ${at} is already in use (by another taskq server?); set TASKQ_PORT to a free port`;
  if (err.code === "EACCES") return `TASKQ_PORT: this user may not listen on ${at}; set TASKQ_PORT to a port above 1023`;
  return `TASKQ_HOST: cannot listen on ${at} (${err.code ?? err.message}); set TASKQ_HOST to an address of this machine`;
}

/** What stands in the way of starting, found without creating or changing anything. */
async function startProblems(config: ServerConfig): Promise<string[]> {
  const lines: string[] = [];
  const taken = config.port === 0 ? null : await listenError(config.host, config.port);
  if (taken) lines.push(listenLine(config, taken));
  if (!config.databaseUrl) {
    for (const p of await embeddedProblems({ dataDir: config.dataDir, port: config.embeddedPort })) lines.push(embeddedLine(p));
  }
  return lines;
}

/** The lines for a start-up failure that the machine's state caused; null for any other error (a bug: its stack is printed). */
function failureLines(err: unknown, config: ServerConfig): string[] | null {
  if (err instanceof EmbeddedStartError) return err.problems.map(embeddedLine);
  if ((err as NodeJS.ErrnoException | null)?.syscall === "listen") return [listenLine(config, err as NodeJS.ErrnoException)];
  return null;
}

function refuse(lines: string[]): never {
  for (const line of lines) console.error(`taskq cannot start: ${line}`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: ServerConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const problems = await startProblems(config);
  if (problems.length > 0) refuse(problems);
  const log = createLogger(config.logLevel);

  let embedded: EmbeddedDatabase | null = null;
  let replica: Replica | null = null;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    // The drain first, while the database answers; the database last. During start-up there is no
    // replica yet: whatever is still starting ends with the process.
    await replica?.stop({ graceMs: config.shutdownGraceMs });
    await embedded?.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));

  try {
    let databaseUrl = config.databaseUrl;
    if (databaseUrl) {
      log.info({ database: new URL(databaseUrl).host }, "using the Postgres from DATABASE_URL");
    } else {
      embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPort, log });
      databaseUrl = embedded.url;
      log.info({ dataDir: config.dataDir, port: config.embeddedPort }, "using the embedded Postgres (set DATABASE_URL to use another)");
    }
    if (stopping) return;
    replica = await startReplica({ ...config, databaseUrl }, log);
  } catch (err) {
    if (stopping) return; // the signal's stop() ends the process
    const lines = failureLines(err, config);
    if (!lines) throw err;
    await embedded?.stop();
    refuse(lines);
  }
  if (stopping) return;
  log.info({ url: replica.server.url, replica: replica.engine.replicaId }, `taskq listening on ${replica.server.url}; dashboard at ${replica.server.url}/`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : `start-up failed: ${String(err)}`);
  process.exit(1);
});
