/**
 * Schema migrations: numbered, forward-only .sql files in the package's migrations/, each applied once in its own
 * transaction. A session-level advisory lock serialises replicas that start together, so exactly one
 * of them applies a given migration and the others wait, then find nothing left to do.
 */
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type pg from "pg";

const MIGRATIONS_DIR = fileURLToPath(new URL("../../migrations/", import.meta.url));
/** An arbitrary constant that identifies taskq's migration lock among other advisory locks. */
const MIGRATION_LOCK_KEY = 7_302_145_091;

interface Migration {
  version: number;
  name: string;
  sql: string;
}

async function migrationsLoad(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (name) => ({
      version: Number.parseInt(name, 10),
      name,
      sql: await readFile(MIGRATIONS_DIR + name, "utf8"),
    })),
  );
}

/** Applies every migration not yet applied; returns the names of those it applied. */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  const migrations = await migrationsLoad();
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    await client.query("create schema if not exists taskq");
    await client.query(
      `create table if not exists taskq.migrations (
         version integer primary key, name text not null, applied_at timestamptz not null default now())`,
    );
    const { rows } = await client.query<{ version: number }>("select version from taskq.migrations");
    const done = new Set(rows.map((r) => r.version));
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await client.query("begin");
      try {
        await client.query(m.sql);
        await client.query("insert into taskq.migrations (version, name) values ($1, $2)", [m.version, m.name]);
        await client.query("commit");
      } catch (err) {
        await client.query("rollback");
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.name);
    }
  } finally {
    await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => {});
    client.release();
  }
  return applied;
}
