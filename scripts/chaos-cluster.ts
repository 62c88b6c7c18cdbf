/**
 * What the chaos run (scripts/chaos.ts) runs: one Postgres (the embedded one, in a temporary folder),
 * three replicas and four workers, and the proxies the faults act on.
 *
 *   replica-0   reaches Postgres through a TcpProxy (db-partition, kill-in-db-outage)
 *   replica-1   its wall clock 300 s ahead, by libfaketime (LD_PRELOAD, FAKETIME="+300s")
 *   replica-2   its wall clock 300 s behind (FAKETIME="-300s")
 *   worker-i    connects to replica i mod 3 through its own TcpProxy (worker-partition), and to
 *               Postgres directly for its records (chaos-worker.ts)
 *
 * libfaketime shifts the wall clock only: FAKETIME_DONT_FAKE_MONOTONIC=1 leaves CLOCK_MONOTONIC alone,
 * as a machine whose clock is off would (Node's timers and performance.now() read it). Without it the
 * offset also lands on the monotonic clock (process.hrtime() reads ≈ the fake epoch); Node still
 * works, but every read of it goes through libfaketime. A replica's skew is checked at each start from
 * the Date header of its HTTP answer, and the run fails if libfaketime did not take.
 *
 * Each replica's database connections carry application_name chaos-replica-i, so the faults can see
 * what a replica has in flight in pg_stat_activity. Every process and proxy is gone after close().
 */
import { access, chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../packages/server/src/embedded.js";
import { chaosTablesCreate, clockAgrees, clockRead, leaseTriggerInstall } from "./chaos-db.js";
import { keyedConfigWrite } from "./chaos-keys.js";
import { Proc, sleep, stopEverything } from "./chaos-procs.js";
import { freePort } from "./free-port.js";
import { TcpProxy } from "./tcp-proxy.js";

const REPLICAS = 3;
const WORKERS = 4;
/** Each replica's clock offset in seconds. */
export const CLOCK_OFFSET_S = [0, 300, -300];
const LIBFAKETIME = process.env.CHAOS_LIBFAKETIME ?? "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const READY_WORKER = /chaos worker .* connected/;

export class Cluster {
  readonly replicas: Proc[] = [];
  readonly workers: Proc[] = [];
  /** The name each worker gives the server (tasks.worker), by index. */
  readonly workerNames = Array.from({ length: WORKERS }, (_, i) => `chaos-worker-${i}`);
  readonly workerProxies: TcpProxy[] = [];
  dbProxy!: TcpProxy;
  admin!: pg.Pool;
  /** Each skewed replica's clock offset as its HTTP Date header shows it, at every start, in s. */
  readonly measuredSkew = new Map<string, number[]>();
  private urls: string[] = [];
  private db: EmbeddedDatabase | null = null;
  private dir: string | null = null;
  private pgPort = 0;
  private readonly starting = new Map<Proc, Promise<void>>();

  constructor(private readonly staleCheckMs: number) {}

  get procs(): Proc[] {
    return [...this.replicas, ...this.workers];
  }

  get replicaUrls(): string[] {
    return this.urls;
  }

  /** The application_name of replica i's database connections. */
  replicaApp(i: number): string {
    return `chaos-replica-${i}`;
  }

  /** Starts everything; the lease trigger goes on after the first migration, before any worker connects. */
  async start(): Promise<void> {
    await access(LIBFAKETIME).catch(() => {
      throw new Error(`${LIBFAKETIME} is missing: install Debian's libfaketime (apt-get install -y faketime)`);
    });
    this.dir = await mkdtemp(path.join(tmpdir(), "taskq-chaos-"));
    await chmod(this.dir, 0o755); // as root, the embedded Postgres runs as an unprivileged user that must reach it
    this.pgPort = await freePort();
    this.db = await startEmbeddedPostgres({ dataDir: path.join(this.dir, "data"), port: this.pgPort });
    const databaseUrl = this.db.url;
    this.admin = new pg.Pool({ connectionString: databaseUrl, max: 4 });
    this.admin.on("error", () => {});
    const reading = await clockRead(this.admin);
    if (!clockAgrees(reading)) throw new Error(`the run's clock is not the database's: ${JSON.stringify(reading)}`);
    await chaosTablesCreate(this.admin);

    const config = await keyedConfigWrite(this.dir);
    this.dbProxy = await TcpProxy.start({ port: this.pgPort });
    const ports = await Promise.all(Array.from({ length: REPLICAS }, freePort));
    this.urls = ports.map((p) => `http://127.0.0.1:${p}`);
    for (const [i, port] of ports.entries()) {
      const url = i === 0 ? databaseUrl.replace(`:${this.pgPort}/`, `:${this.dbProxy.port}/`) : databaseUrl;
      this.replicas.push(
        new Proc(`replica-${i}`, "packages/server/src/main.ts", {
          DATABASE_URL: `${url}?application_name=${this.replicaApp(i)}`,
          TASKQ_PORT: String(port),
          TASKQ_STALE_CHECK_MS: String(this.staleCheckMs),
          TASKQ_CANCEL_GRACE_MS: "2000",
          TASKQ_POLL_INTERVAL_MS: "1000",
          TASKQ_BUILTIN_SCHEDULES: "off",
          TASKQ_LOG_LEVEL: "warn",
          TASKQ_CONFIG: config,
          ...shiftedClock(CLOCK_OFFSET_S[i]),
        }),
      );
    }
    for (let i = 0; i < WORKERS; i++) {
      const proxy = await TcpProxy.start({ port: ports[i % REPLICAS] });
      this.workerProxies.push(proxy);
      this.workers.push(
        new Proc(`worker-${i}`, "scripts/chaos-worker.ts", {
          CHAOS_URL: `http://127.0.0.1:${proxy.port}`,
          CHAOS_DATABASE_URL: databaseUrl,
          CHAOS_NAME: this.workerNames[i],
        }),
      );
    }
    await this.restart(this.replicas[0]); // migrates the schema
    await Promise.all(this.replicas.slice(1).map((r) => this.restart(r)));
    await leaseTriggerInstall(this.admin);
    await Promise.all(this.workers.map((w) => this.restart(w)));
  }

  /** The replica a worker (name as in tasks.worker) is connected to. */
  replicaOf(workerName: string): string {
    return this.replicas[this.workerNames.indexOf(workerName) % REPLICAS].name;
  }

  /** Starts a process that is down (once, however many ask) and waits until it is ready. */
  restart(p: Proc): Promise<void> {
    if (!p.down) return this.starting.get(p) ?? Promise.resolve();
    const started = (this.replicas.includes(p) ? this.startReplica(p) : p.start(READY_WORKER)).finally(() => this.starting.delete(p));
    this.starting.set(p, started);
    return started;
  }

  /** Stops Postgres, waits a second, and starts it again. */
  async restartPostgres(): Promise<void> {
    await this.db!.stop();
    this.db = null;
    await sleep(1_000);
    this.db = await startEmbeddedPostgres({ dataDir: path.join(this.dir!, "data"), port: this.pgPort });
  }

  /** Kills every process (resumed first), closes the proxies and the pool, stops Postgres, removes the folder. */
  async close(): Promise<void> {
    await stopEverything();
    await Promise.all([this.dbProxy, ...this.workerProxies].filter(Boolean).map((p) => p.close()));
    await this.admin?.end().catch(() => {});
    await this.db?.stop().catch(() => {});
    this.db = null;
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
    this.dir = null;
  }

  /** Starts a replica and waits until its port answers; checks its clock from the answer's Date header. */
  private async startReplica(r: Proc): Promise<void> {
    const i = this.replicas.indexOf(r);
    await r.start(null);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (r.crashed) throw new Error(r.crashed);
      const res = await fetch(`${this.urls[i]}/metrics`).catch(() => null);
      if (res?.ok) {
        await res.arrayBuffer();
        if (CLOCK_OFFSET_S[i] !== 0) this.checkSkew(r, res.headers.get("date"), CLOCK_OFFSET_S[i]);
        return;
      }
      if (Date.now() > deadline) throw new Error(`${r.name} did not start listening`);
      await sleep(50);
    }
  }

  private checkSkew(r: Proc, date: string | null, offsetS: number): void {
    const skew = Math.round((Date.parse(date ?? "") - Date.now()) / 1000);
    if (!(Math.abs(skew - offsetS) <= 5)) throw new Error(`libfaketime did not shift ${r.name}'s clock by ${offsetS} s (its Date header is ${skew} s off)`);
    this.measuredSkew.set(r.name, [...(this.measuredSkew.get(r.name) ?? []), skew]);
  }
}

/** The environment that shifts a process's wall clock by `offsetS` (its monotonic clock is left alone). */
function shiftedClock(offsetS: number): NodeJS.ProcessEnv {
  if (offsetS === 0) return {};
  return { LD_PRELOAD: LIBFAKETIME, FAKETIME: `${offsetS > 0 ? "+" : ""}${offsetS}s`, FAKETIME_DONT_FAKE_MONOTONIC: "1" };
}
