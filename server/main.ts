/**
 * `npm start`: run one taskq server. With DATABASE_URL it uses that Postgres; without, it starts the
 * embedded one, keeping its data in TASKQ_DATA_DIR. SIGINT/SIGTERM stop it gracefully: running tasks get
 * TASKQ_SHUTDOWN_GRACE_MS to finish, then go back to the queue.
 */
import { ConfigError, loadConfig } from "./config.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./embedded.js";
import { createLogger } from "./log.js";
import { startReplica } from "./app.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  let embedded: EmbeddedDatabase | null = null;
  let databaseUrl = config.databaseUrl;
  if (databaseUrl) {
    log.info({ database: new URL(databaseUrl).host }, "using the Postgres from DATABASE_URL");
  } else {
    embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPort, ownSignals: true });
    databaseUrl = embedded.url;
    log.info({ dataDir: config.dataDir, port: config.embeddedPort }, "using the embedded Postgres (set DATABASE_URL to use another)");
  }
  const replica = await startReplica({ ...config, databaseUrl }, log);
  log.info({ url: replica.server.url, replica: replica.engine.replicaId }, `taskq listening on ${replica.server.url}; dashboard at ${replica.server.url}/`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    await replica.stop({ graceMs: config.shutdownGraceMs });
    await embedded?.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
