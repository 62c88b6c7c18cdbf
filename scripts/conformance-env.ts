/**
 * What the conformance harness (scripts/conformance.ts) runs a worker under test against, and the
 * processes it runs: a database of its own, a taskq server process with short liveness timings, and
 * the worker, which reaches the server through a TCP proxy so the harness can cut its stream.
 *
 * The server runs from the TypeScript sources through tsx (packages/server/src/main.ts), as the
 * tests that start a server process do (start.test.ts, shutdown.test.ts): it is always the code of the
 * checkout, with no `npm run build` first and no stale dist/ to mislead; what the built bin adds (its
 * two-line wrapper, tsc's output) is test/packages.test.ts's concern.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "@taskq/server";
import { freePort } from "./free-port.js";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SERVER_MAIN = path.join(ROOT, "packages/server/src/main.ts");

/** The queue the harness dispatches to (defined in the server's config, so a queue other than "default" reaches the worker). */
export const QUEUE = "conformance";

/**
 * The server's timings. S = 20 s gives a lease validity V of 8 s (docs/worker-protocol.md §4): a cut
 * stream's lease returns to the queue within 8 s, while a worker, heartbeating every 2 s, keeps its
 * leases through a stall of about 4 s (S = 10 s lost them on a 2-CPU machine running ten harnesses at
 * once). The interrupt grace is long, so that a task interrupted while sleeping ends CANCELED by its
 * worker's finish, never by the grace running out (the case tells the two apart).
 */
export const TIMINGS = {
  TASKQ_STALE_CHECK_MS: 20_000,
  TASKQ_CANCEL_GRACE_MS: 15_000,
  TASKQ_SHUTDOWN_GRACE_MS: 5_000,
  TASKQ_POLL_INTERVAL_MS: 500,
} as const;

/** How long a process may take to start (tsx compiling the server, Postgres opening) or to stop. */
const START_MS = 60_000;
const STOP_MS = 30_000;
/** Lines of a process's output kept for the report of a failed run. */
const KEPT_LINES = 200;

/** A child process whose output is kept, line by line, and can be waited for. */
export class Proc {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private lines: string[] = [];
  /** Lines no longer kept: the first kept line is line number `dropped` of the output. */
  private dropped = 0;
  private partial = "";
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly name: string,
    argv: string[],
    opts: { cwd?: string; env: NodeJS.ProcessEnv; logFile?: string },
  ) {
    this.child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
    const log = opts.logFile ? createWriteStream(opts.logFile, { flags: "a" }) : null;
    for (const event of ["close", "error"]) this.child.once(event, () => log?.end());
    const take = (chunk: Buffer) => {
      log?.write(chunk);
      const parts = (this.partial + chunk.toString()).split("\n");
      this.partial = parts.pop()!;
      this.lines.push(...parts);
      if (this.lines.length > KEPT_LINES * 2) {
        this.dropped += this.lines.length - KEPT_LINES;
        this.lines = this.lines.slice(-KEPT_LINES);
      }
      for (const listener of this.listeners) listener();
    };
    this.child.stdout!.on("data", take);
    this.child.stderr!.on("data", take);
    this.exited = new Promise((resolve) => {
      this.child.once("error", (err) => {
        this.lines.push(`cannot start ${argv[0]}: ${err.message}`);
        resolve({ code: null, signal: null });
      });
      this.child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    void this.exited.then(() => {
      for (const listener of this.listeners) listener();
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  /** The last lines of its output (stdout and stderr together). */
  tail(n = 40): string {
    return [...this.lines, this.partial].filter((l) => l !== "").slice(-n).join("\n");
  }

  /** Resolves once a line of its output matches; rejects when it exits first or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let seen = this.dropped;
      const check = () => {
        seen = Math.max(seen, this.dropped);
        for (; seen < this.dropped + this.lines.length; seen++) if (pattern.test(this.lines[seen - this.dropped])) return done(resolve);
        if (!this.running) done(() => reject(new Error(`${this.name} exited before printing ${pattern}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`${this.name} printed no ${pattern} within ${timeoutMs} ms`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        settle();
      };
      this.listeners.add(check);
      check();
    });
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** Sends `signal` and waits for the exit; SIGKILL when it has not exited after `timeoutMs`. */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = STOP_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.signal(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([this.exited, late]);
    clearTimeout(timer);
    this.signal("SIGKILL");
    return this.exited;
  }
}

/** The environment of this process without any taskq setting, so a developer's own (TLS, tokens, a URL) reach no child. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("TASKQ_") && k !== "DATABASE_URL") env[k] = v;
  return { ...env, ...extra };
}

/** A database made for this run, on a Postgres given by URL or on an embedded one started for it. */
export interface Database {
  url: string;
  /** Drops the database and stops the embedded Postgres, if one was started. */
  close(): Promise<void>;
}

export async function openDatabase(adminUrl: string | null, workDir: string): Promise<Database> {
  let embedded: EmbeddedDatabase | null = null;
  if (!adminUrl) {
    // As root, the embedded Postgres runs as an unprivileged user that must reach its folder.
    await chmod(workDir, 0o755);
    embedded = await startEmbeddedPostgres({ dataDir: path.join(workDir, "postgres"), port: await freePort() });
    adminUrl = embedded.url;
  }
  const name = `taskq_conformance_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async close() {
      try {
        await dropDatabase(adminUrl, name);
      } finally {
        await embedded?.stop();
      }
    },
  };
}

/** Drops with force, once the stopped server's connections have had a moment to close by themselves. */
async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      const { rows } = await c.query("select count(*)::int4 as n from pg_stat_activity where datname = $1", [name]);
      if (rows[0].n === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await c.query(`drop database if exists ${name} with (force)`);
  } finally {
    await c.end();
  }
}

export interface Tokens {
  /** Role worker: given to the worker under test as TASKQ_TOKEN. */
  worker: string;
  /** Role admin: the harness's client, which pauses and resumes the queue. */
  harness: string;
}

/** Writes the server's config file: the harness's queue, and auth on, so the worker must send its token. */
export async function writeServerConfig(workDir: string): Promise<{ file: string; tokens: Tokens }> {
  const tokens: Tokens = { worker: randomBytes(24).toString("hex"), harness: randomBytes(24).toString("hex") };
  const config = {
    queues: { [QUEUE]: {} },
    auth: {
      tokens: [
        { name: "conformance-worker", role: "worker", token: tokens.worker },
        { name: "conformance-harness", role: "admin", token: tokens.harness },
      ],
    },
  };
  const file = path.join(workDir, "taskq.json");
  await writeFile(file, JSON.stringify(config, null, 2));
  return { file, tokens };
}

export interface ServerSettings {
  port: number;
  databaseUrl: string;
  configFile: string;
  /** Where its whole output goes too (appended: a restarted server's follows the first's). */
  logFile?: string;
}

/** Starts the server and waits until it listens; rejects (after stopping it) when it does not. */
export async function startServer(s: ServerSettings): Promise<Proc> {
  const env = cleanEnv({
    DATABASE_URL: s.databaseUrl,
    TASKQ_HOST: "127.0.0.1",
    TASKQ_PORT: String(s.port),
    TASKQ_CONFIG: s.configFile,
    TASKQ_LOG_LEVEL: "info",
    // The hourly temp-cleanup task would be a task the cases did not dispatch.
    TASKQ_BUILTIN_SCHEDULES: "off",
    ...Object.fromEntries(Object.entries(TIMINGS).map(([k, v]) => [k, String(v)])),
  });
  const server = new Proc("server", [process.execPath, "--conditions=@taskq/source", "--import", "tsx", SERVER_MAIN], { cwd: ROOT, env, logFile: s.logFile });
  try {
    await server.waitForLine(new RegExp(`taskq listening on http://127\\.0\\.0\\.1:${s.port}\\b`), START_MS);
  } catch (err) {
    await server.stop("SIGKILL");
    throw new Error(`${(err as Error).message}:\n${server.tail()}`);
  }
  return server;
}

/** A temporary folder for the run's files (config, embedded Postgres), removed by the returned function. */
export async function workFolder(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "taskq-conformance-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
