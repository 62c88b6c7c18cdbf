/**
 * `npm start` on a fresh machine: with no DATABASE_URL the server starts its embedded Postgres in a
 * local folder, serves on the configured port, answers health checks, and stops cleanly on SIGTERM.
 *
 * And as a terminal uses it: Ctrl-C signals the whole foreground process group, yet the embedded
 * Postgres (in a session of its own) outlives the drain and is stopped last; a server killed outright
 * takes its Postgres with it. A start that cannot succeed (a port taken, a folder in the way) says so in
 * one line per problem, naming the setting, before it creates or changes anything. A first start
 * interrupted during initdb leaves nothing that stops the next one.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import pg from "pg";
import { Health, HealthCheckResponse_ServingStatus } from "@taskq/protocol/grpc";
import { TaskClient, Worker } from "@taskq/sdk";
import { connect } from "@taskq/sdk";
import { createTestDatabase, waitFor } from "./helpers.js";
import { freePort, startTs, type Child, type StartOptions } from "./processes.js";

/** A first start runs initdb, which takes seconds, more on a busy machine. */
const START_MS = 90_000;

/** A temporary folder the embedded Postgres may use (as root it runs as an unprivileged user that must reach it). */
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "taskq-start-"));
  await chmod(dir, 0o755);
  return dir;
}

interface Settings {
  port: number;
  pgPort: number;
  dataDir: string;
}

async function settingsIn(dir: string): Promise<Settings> {
  return { port: await freePort(), pgPort: await freePort(), dataDir: path.join(dir, "pg") };
}

function startServer(s: Settings, env: NodeJS.ProcessEnv = {}, opts: StartOptions = {}): Child {
  return startTs(
    "packages/server/src/main.ts",
    { DATABASE_URL: "", TASKQ_PORT: String(s.port), TASKQ_EMBEDDED_PORT: String(s.pgPort), TASKQ_DATA_DIR: s.dataDir, ...env },
    opts,
  );
}

const listening = (s: Settings) => new RegExp(`taskq listening on http://127\\.0\\.0\\.1:${s.port}`);

/** Kills a server that a failed test left running (its embedded Postgres follows it), and waits for it. */
async function kill(server: Child): Promise<void> {
  server.signal("SIGKILL");
  await server.exited;
}

/** A TCP listener holding `port` on loopback, as another program would. */
async function occupy(port: number): Promise<Server> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => s.once("error", reject).listen(port, "127.0.0.1", resolve));
  return s;
}

/** The non-empty lines of a process's output. */
const lines = (output: string) => output.split("\n").filter((l) => l.trim() !== "");

/** Asserts that a server refused to start with exactly one line, naming `setting`. */
async function assertRefused(server: Child, setting: string, also: RegExp): Promise<void> {
  const code = await server.exited;
  const out = lines(server.output());
  assert.equal(code, 1, server.output());
  assert.equal(out.length, 1, `one line:\n${server.output()}`);
  assert.match(out[0], new RegExp(`^taskq cannot start: ${setting}: `));
  assert.match(out[0], also);
  assert.match(out[0], new RegExp(`set ${setting} to`), "it says which setting changes it");
}

/** The embedded Postgres's process id, from the lock file it keeps in its data folder while it runs. */
function postmasterPid(dataDir: string): number {
  return Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

test("with no settings the server runs on an embedded Postgres kept in a local folder; a second one with the same settings names each setting in its way, in one line each", async () => {
  const dir = await tempDir();
  const s = await settingsIn(dir);
  const server = startServer(s);
  try {
    await server.waitFor(/using the embedded Postgres/, START_MS);
    await server.waitFor(listening(s), START_MS);
    const url = `http://127.0.0.1:${s.port}`;
    const conn = connect({ url });
    const health = await createClient(Health, conn.transport).check({});
    assert.equal(health.status, HealthCheckResponse_ServingStatus.SERVING);
    conn.close();
    const client = new TaskClient({ url });
    const handle = await client.dispatch("hello");
    assert.equal((await handle.status()).status, "pending");

    const second = startServer(s);
    assert.equal(await second.exited, 1, second.output());
    const out = lines(second.output());
    assert.deepEqual(
      out.map((l) => /^taskq cannot start: ([A-Z_]+): /.exec(l)?.[1]),
      ["TASKQ_PORT", "TASKQ_EMBEDDED_PORT", "TASKQ_DATA_DIR"],
      second.output(),
    );
    assert.equal((await handle.status()).status, "pending", "the first server serves on");
    client.close();
  } finally {
    server.signal("SIGTERM");
    const code = await server.exited;
    await rm(dir, { recursive: true, force: true });
    assert.equal(code, 0, server.output());
  }
});

test("Ctrl-C (SIGINT to the whole process group) drains against a live embedded Postgres: the leased task goes back to the queue with its attempt given back", async () => {
  const dir = await tempDir();
  const s = await settingsIn(dir);
  const env = { TASKQ_SHUTDOWN_GRACE_MS: "500" };
  let server = startServer(s, env, { group: true });
  const url = `http://127.0.0.1:${s.port}`;
  const worker = new Worker({ url, reconnect: { initialMs: 50, maxMs: 500 } });
  let client: TaskClient | null = null;
  try {
    await server.waitFor(listening(s), START_MS);
    worker.register("held", (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true })));
    await worker.start();
    client = new TaskClient({ url });
    const task = await client.dispatch("held", {}, { maxAttempts: 1 });
    await waitFor("the task to run", async () => (await task.status()).status === "running");

    server.signal("SIGINT");
    assert.equal(await server.exited, 0, server.output());
    await server.waitFor(/"msg":"stopping"/);
    assert.doesNotMatch(server.output(), /"level":[56]0/, "no errors: the database answered throughout the drain");
    await worker.stop({ graceMs: 1_000 });

    server = startServer(s, env, { group: true });
    await server.waitFor(listening(s), START_MS);
    const back = await client.status(task.id);
    assert.deepEqual({ status: back.status, attempts: back.attempts }, { status: "pending", attempts: 0 }, "returned by the drain, not left to a reaper");
  } finally {
    client?.close();
    await worker.stop({ graceMs: 0 });
    server.signal("SIGTERM");
    const code = await server.exited;
    await rm(dir, { recursive: true, force: true });
    assert.equal(code, 0, server.output());
  }
});

test("a server killed with SIGKILL does not leave its embedded Postgres running", async () => {
  const dir = await tempDir();
  const s = await settingsIn(dir);
  const server = startServer(s);
  try {
    await server.waitFor(listening(s), START_MS);
    const pid = postmasterPid(s.dataDir);
    assert.ok(alive(pid));
    server.signal("SIGKILL"); // `kill -9` of the server's process: it has no chance to stop its Postgres
    await server.exited;
    await waitFor("the embedded Postgres to stop", () => !alive(pid), 60_000);
  } finally {
    await kill(server);
    await rm(dir, { recursive: true, force: true });
  }
});

test("a taken TASKQ_EMBEDDED_PORT stops the start in one line naming it, before the data folder is made", async () => {
  const dir = await tempDir();
  const s = await settingsIn(dir);
  const holder = await occupy(s.pgPort);
  const server = startServer(s);
  try {
    await assertRefused(server, "TASKQ_EMBEDDED_PORT", new RegExp(String(s.pgPort)));
    assert.deepEqual(await readdir(dir), [], "nothing was created");
  } finally {
    await kill(server);
    holder.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a taken TASKQ_PORT stops the start in one line naming it, before the data folder is made or a database migrated", async () => {
  const dir = await tempDir();
  const s = await settingsIn(dir);
  const holder = await occupy(s.port);
  const database = await createTestDatabase();
  try {
    const embedded = startServer(s);
    await assertRefused(embedded, "TASKQ_PORT", new RegExp(`127\\.0\\.0\\.1:${s.port}`));
    assert.deepEqual(await readdir(dir), [], "no data folder was created");

    const external = startServer(s, { DATABASE_URL: database.url });
    await assertRefused(external, "TASKQ_PORT", new RegExp(`127\\.0\\.0\\.1:${s.port}`));
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    const { rows } = await db.query("select to_regnamespace('taskq') is null as untouched");
    await db.end();
    assert.equal(rows[0].untouched, true, "the database was not migrated");
  } finally {
    holder.close();
    await database.drop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a first start interrupted during initdb does not stop the next: a half-made data folder and a leftover temporary one are replaced", async () => {
  const dir = await tempDir();
  const s = await settingsIn(dir);
  // What an interrupted initdb left: a data folder with only global/ (initdb's first subfolder) …
  await mkdir(path.join(s.dataDir, "global"), { recursive: true });
  // … and a temporary folder of a start that initialises beside the data folder, killed before its rename.
  await mkdir(path.join(`${s.dataDir}.initdb`, "global"), { recursive: true });
  await writeFile(path.join(`${s.dataDir}.initdb`, "PG_VERSION"), "18\n");
  const server = startServer(s);
  try {
    await server.waitFor(listening(s), START_MS);
    assert.ok(existsSync(path.join(s.dataDir, "PG_VERSION")));
    assert.ok(!existsSync(`${s.dataDir}.initdb`), "the leftover temporary folder is gone");
  } finally {
    server.signal("SIGTERM");
    const code = await server.exited;
    await rm(dir, { recursive: true, force: true });
    assert.equal(code, 0, server.output());
  }
});

test("a first start killed during initdb (SIGKILL to its process group) leaves nothing that stops the next one", async () => {
  const dir = await tempDir();
  const s = await settingsIn(dir);
  let server = startServer(s, {}, { group: true });
  let failure: unknown = null;
  try {
    await server.waitFor(/initialising the embedded Postgres/, START_MS);
    server.signal("SIGKILL"); // at whatever step initdb is: each must leave a state the next start gets past
    await server.exited;
    // Had initdb finished before the kill landed, the first start's Postgres would be running, until its
    // watchdog stops it: meanwhile the next start rightly finds its port or folder in use.
    // Each start either listens or is refused and exits: it is waited for as long as it takes (a start
    // on a loaded machine may take minutes), not cut off and misread as refused.
    const deadline = Date.now() + 60_000;
    for (;;) {
      server = startServer(s);
      if (await server.waitFor(listening(s), 10 * START_MS).then(() => true, () => false)) break;
      assert.match(server.output(), /^taskq cannot start: [A-Z_]+: .* in use/m, server.output());
      assert.ok(Date.now() < deadline, "the first start's Postgres stopped");
    }
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    server.signal("SIGTERM");
    const code = await server.exited;
    await rm(dir, { recursive: true, force: true });
    if (failure === null) assert.equal(code, 0, server.output()); // else the first failure is the one reported
  }
});

test("a data folder holding anything but Postgres is refused in one line naming TASKQ_DATA_DIR, and left as it was", async () => {
  const dir = await tempDir();
  const s = await settingsIn(dir);
  await mkdir(path.join(s.dataDir, "global"), { recursive: true });
  await writeFile(path.join(s.dataDir, "notes.txt"), "mine");
  const server = startServer(s);
  try {
    await assertRefused(server, "TASKQ_DATA_DIR", /notes\.txt/);
    assert.deepEqual((await readdir(s.dataDir)).sort(), ["global", "notes.txt"]);
    assert.deepEqual(await readdir(dir), ["pg"]);
  } finally {
    await kill(server);
    await rm(dir, { recursive: true, force: true });
  }
});
