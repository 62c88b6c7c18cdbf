/**
 * Test helpers: a fresh database per test file (created on TASKQ_TEST_DATABASE_URL, dropped after),
 * server replicas on loopback port 0, SDK clients and workers, and a hand-driven worker stream.
 *
 * `harness.close()` stops everything it started and fails if anything leaked (as connect-es's
 * useNodeServer teardown does, packages/connect-node/src/use-node-server-helper.spec.ts): once the
 * test's clients and workers are closed, and before its replicas stop, each replica must have no worker
 * session left but its own maintenance worker's, no watch stream, and no open connection. Connections
 * are counted from the server's side: every socket a server in this process accepts is published on the
 * `net.server.socket` diagnostics channel, and is open until it emits "close".
 */
import { randomBytes } from "node:crypto";
import diagnostics from "node:diagnostics_channel";
import type net from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import pg from "pg";
import { pino } from "pino";
import { startReplica, type Replica } from "../packages/server/src/app.js";
import { loadConfig, withBuiltinQueues, type ServerConfig } from "../packages/server/src/config.js";
import type { Clock } from "../packages/server/src/engine/clock.js";
import { TaskClient, Worker, type WorkerOptions } from "@taskq/sdk";
import { connect, type Connection, type ConnectionOptions } from "@taskq/sdk";
import { AsyncQueue } from "@taskq/protocol";
import { TaskQueue } from "@taskq/protocol";
import { WorkerMessageSchema, WorkerService, type ServerMessage, type WorkerMessage } from "@taskq/protocol";

const ADMIN_URL = process.env.TASKQ_TEST_DATABASE_URL;

export const silentLog = pino({ level: process.env.TASKQ_TEST_LOG_LEVEL ?? "silent" });

export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  if (!ADMIN_URL) throw new Error("TASKQ_TEST_DATABASE_URL is not set: run the tests with `npm test`");
  const name = `taskq_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      // pool.end() resolves while its clients' connections are still closing; dropping with force at
      // that moment kills them mid-close, and such a client, already out of its pool, has no error
      // listener left. Let them finish first (force is for anything truly left behind).
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline) {
        const { rows } = await c.query("select count(*)::int4 as n from pg_stat_activity where datname = $1", [name]);
        if (rows[0].n === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/** Server-side sockets accepted in this process and not closed yet, with the port they were accepted on. */
const serverSockets = new Map<net.Socket, number>();
diagnostics.subscribe("net.server.socket", (message) => {
  const { socket } = message as { socket: net.Socket };
  if (socket.destroyed || socket.localPort === undefined) return;
  serverSockets.set(socket, socket.localPort);
  socket.once("close", () => serverSockets.delete(socket));
});

/** The connections a server listening on `port` in this process has open (server side), as "client host:port". */
export function openConnections(port: number): string[] {
  return [...serverSockets].filter(([, p]) => p === port).map(([s]) => `${s.remoteAddress}:${s.remotePort}`);
}

/**
 * Every replica runs its own maintenance worker through an ordinary session (server/engine/system-worker.ts).
 * While that session reopens (after a database outage) the replica has none, and one leaked session
 * would go unseen then: the engine counts sessions but does not say whose they are.
 */
const OWN_SESSIONS = 1;
/**
 * How long teardown lets closed clients' connections and streams end on the server before it calls them
 * leaked: a client's close reaches the server as a few loopback packets, so this only has to outlast a
 * busy machine's scheduling. A leaked stream or HTTP/2 connection stays open forever. An idle HTTP/1.1
 * connection that fetch() keeps for its next request is the one thing the server ends by itself (after
 * its 5-s keep-alive timeout): teardown then waits for that instead of failing, which is why tests that
 * use fetch ask for "connection: close".
 */
const LEAK_CHECK_MS = 10_000;

/**
 * What a replica still has open that a test's clients and workers opened: worker sessions (past its own
 * maintenance worker's), watch streams, and connections. Empty when nothing is left.
 */
export function leftOpen(replica: Replica): string[] {
  const left: string[] = [];
  const sessions = replica.engine.sessionCount - OWN_SESSIONS;
  if (sessions > 0) left.push(`${sessions} worker session(s)`);
  if (replica.engine.watcherCount > 0) left.push(`${replica.engine.watcherCount} watch stream(s)`);
  const conns = openConnections(replica.server.port);
  if (conns.length > 0) left.push(`${conns.length} connection(s) (from ${conns.join(", ")})`);
  return left;
}

/** Waits until no replica has anything left open (see leftOpen); throws naming what leaked after `timeoutMs`. */
async function assertNothingLeaked(replicas: Replica[], timeoutMs = LEAK_CHECK_MS): Promise<void> {
  const leaks = () =>
    replicas.flatMap((r) => {
      const left = leftOpen(r);
      return left.length > 0 ? [`${r.server.url}: ${left.join(", ")}`] : [];
    });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = leaks();
    if (found.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`leaked: still open ${timeoutMs} ms after the test's clients and workers were closed:\n  ${found.join("\n  ")}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Polls `check` until it returns a truthy value, failing after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T> | T, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class Harness {
  readonly replicas: Replica[] = [];
  private readonly closers: (() => Promise<void> | void)[] = [];
  private dbUrl = "";
  private dropDb: (() => Promise<void>) | null = null;
  pool!: pg.Pool;

  static async create(): Promise<Harness> {
    const h = new Harness();
    const db = await createTestDatabase();
    h.dbUrl = db.url;
    h.dropDb = db.drop;
    h.pool = new pg.Pool({ connectionString: db.url, max: 4 });
    return h;
  }

  get databaseUrl(): string {
    return this.dbUrl;
  }

  async replica(overrides: Partial<ServerConfig> = {}, opts: { clock?: Clock } = {}): Promise<Replica> {
    // Built-in maintenance schedules fire on the hour; tests that want them turn them on.
    const config = { ...loadConfig({}), host: "127.0.0.1", port: 0, pollIntervalMs: 200, builtinSchedules: false, ...overrides };
    config.queues = withBuiltinQueues(overrides.queues ?? {});
    const replica = await startReplica({ ...config, databaseUrl: this.dbUrl }, silentLog, opts);
    this.replicas.push(replica);
    return replica;
  }

  /** Stops one replica before the others, as an operator restarting it would. */
  async stopReplica(replica: Replica, opts: { graceMs?: number } = {}): Promise<void> {
    this.replicas.splice(this.replicas.indexOf(replica), 1);
    await replica.stop(opts);
  }

  client(replica = this.replicas[0]): TaskClient {
    const c = new TaskClient({ url: replica.server.url });
    this.closers.push(() => c.close());
    return c;
  }

  /** The generated Connect client, for requests the SDK would never build. */
  rpc(replica = this.replicas[0]): Client<typeof TaskQueue> {
    const conn = connect({ url: replica.server.url });
    this.closers.push(() => conn.close());
    return createClient(TaskQueue, conn.transport);
  }

  worker(opts: Partial<WorkerOptions> = {}, replica = this.replicas[0]): Worker {
    const w = new Worker({ url: replica.server.url, reconnect: { initialMs: 20, maxMs: 200 }, ...opts });
    this.closers.push(() => w.stop({ graceMs: 1_000 }));
    return w;
  }

  rawWorker(replica = this.replicas[0]): RawWorker {
    const raw = new RawWorker(replica.server.url);
    this.closers.push(() => raw.close());
    return raw;
  }

  async count(table: "tasks" | "history" | "task_log" | "idempotency_keys"): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(`select count(*)::int4 as n from taskq.${table}`);
    return rows[0].n;
  }

  /**
   * Closes the test's clients and workers, fails if a replica still has a worker session, a watch
   * stream or a connection open (see leftOpen), and stops everything either way.
   */
  async close(opts: { leakCheckMs?: number } = {}): Promise<void> {
    let leak: unknown = null;
    try {
      for (const close of this.closers.splice(0).reverse()) await close();
      await assertNothingLeaked(this.replicas, opts.leakCheckMs);
    } catch (err) {
      leak = err;
    }
    for (const r of this.replicas) await r.stop();
    await this.pool.end();
    await this.dropDb?.();
    if (leak) throw leak;
  }
}

type MessageKind = NonNullable<ServerMessage["message"]["case"]>;

/** A worker stream driven message by message, as a worker in another language would. */
export class RawWorker {
  private readonly conn: Connection;
  private readonly outbox = new AsyncQueue<WorkerMessage>();
  private readonly inbox: ServerMessage[] = [];
  private waiters: (() => void)[] = [];
  private ended: unknown = null;
  readonly done: Promise<void>;

  constructor(target: string | ConnectionOptions) {
    this.conn = connect(typeof target === "string" ? { url: target } : target);
    const client = createClient(WorkerService, this.conn.transport);
    this.done = (async () => {
      try {
        for await (const m of client.connect(this.outbox)) {
          this.inbox.push(m);
          for (const wake of this.waiters.splice(0)) wake();
        }
        this.ended = "ended";
      } catch (err) {
        this.ended = err;
      }
      for (const wake of this.waiters.splice(0)) wake();
    })();
  }

  send(message: MessageInitShape<typeof WorkerMessageSchema>["message"]): void {
    this.outbox.push(create(WorkerMessageSchema, { message }));
  }

  hello(types: string[], credits = 0, queues: string[] = [], acceptsBatches = false): void {
    this.send({ case: "hello", value: { workerName: "raw", taskTypes: types.map((name) => ({ name })), queues, acceptsBatches } });
    if (credits > 0) this.send({ case: "credits", value: { count: credits } });
  }

  /** The next server message of this kind (messages of other kinds stay for later). */
  async next<C extends MessageKind>(kind: C, timeoutMs = 10_000): Promise<Extract<ServerMessage["message"], { case: C }>["value"]> {
    const m: { value?: unknown } = await this.nextOf([kind], timeoutMs);
    return m.value as never;
  }

  /** The next server message of any of these kinds, as { case, value }. */
  async nextOf<C extends MessageKind>(kinds: C[], timeoutMs = 10_000): Promise<Extract<ServerMessage["message"], { case: C }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => (kinds as string[]).includes(m.message.case ?? ""));
      if (i >= 0) return this.inbox.splice(i, 1)[0].message as never;
      if (this.ended) throw this.ended === "ended" ? new Error(`stream ended before ${kinds}`) : this.ended;
      if (Date.now() > deadline) throw new Error(`no ${kinds} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** The error that ended the stream, or "ended" for a clean end. */
  async result(): Promise<unknown> {
    await this.done;
    return this.ended;
  }

  async close(): Promise<void> {
    this.outbox.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.done, new Promise((r) => (timer = setTimeout(r, 2_000)))]);
    clearTimeout(timer);
    this.conn.close();
  }
}

/**
 * GET /metrics on a connection of its own, closed once answered (a connection left open would be taken
 * for a leak at teardown), parsed into samples: "name{labels}" → value.
 */
export async function scrapeMetrics(url: string): Promise<{ status: number; contentType: string; samples: Map<string, number> }> {
  const res = await fetch(`${url}/metrics`, { headers: { connection: "close" } });
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { status: res.status, contentType: res.headers.get("content-type") ?? "", samples };
}
