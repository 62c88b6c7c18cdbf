/**
 * The taskq server as a library, for running it inside another Node process (a test suite, or an
 * application that wants its own start-up): read a configuration, start Postgres or use one, start a
 * replica. The `taskq-server` bin (main.ts) does the same from environment variables.
 */
export { startReplica, type Replica } from "./app.js";
export {
  ConfigError,
  DEFAULT_DATA_DIR,
  DEFAULT_DATABASE_CONNECT_TIMEOUT_MS,
  DEFAULT_DATABASE_QUERY_TIMEOUT_MS,
  DEFAULT_HOST,
  DEFAULT_LOG_LEVEL,
  DEFAULT_PORT,
  loadConfig,
  type ConfigSource,
  type ServerConfig,
} from "./config.js";
export { EmbeddedStartError, startEmbeddedPostgres, type EmbeddedDatabase, type EmbeddedOptions } from "./embedded.js";
export { createLogger } from "./log.js";
