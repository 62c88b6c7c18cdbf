/**
 * `npm run chaos`: the crash test. Three server replicas and four worker processes share one Postgres
 * (the embedded one, in a temporary folder). For CHAOS_SECONDS (default 300) tasks are dispatched
 * (quick, slow, retrying, failing, and long ones that get interrupted) while processes are killed with
 * SIGKILL at random and restarted, and Postgres itself is restarted once in the middle. Then the run
 * waits for the queue to settle and checks every task:
 *
 *   lost       dispatched but missing, still pending, or not in its expected final status (a completed
 *              task must also have the side effect of the attempt that completed it)
 *   duplicate  an outcome recorded twice (a task both active and finished), or one attempt run twice
 *   stuck      left RUNNING or CANCELLING, or ended STUCK
 *
 * The last line is exactly `chaos: N tasks, K kills, L lost, D duplicate, S stuck`; the exit code is 0
 * only when L, D and S are all 0. CHAOS_JSON names a file for the figures as JSON.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { freePort } from "./free-port.js";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../server/embedded.js";
import { Code, TaskClient, TaskqError } from "../sdk/index.js";
import { verify, type Kind } from "./chaos-check.js";

const SECONDS = Number(process.env.CHAOS_SECONDS ?? 300);
const REPLICAS = 3;
const WORKERS = 4;
/** Dispatching stops this far into the run; the kills go on until the end. */
const DISPATCH_SHARE = 0.8;
const SETTLE_TIMEOUT_MS = 120_000;
const STALE_CHECK_MS = 2_000;
const KIND_MIX: [Kind, number][] = [
  ["chaos.quick", 0.84],
  ["chaos.slow", 0.04],
  ["chaos.retry", 0.05],
  ["chaos.fail", 0.03],
  ["chaos.interrupted", 0.04],
];

if (!Number.isFinite(SECONDS) || SECONDS < 10) {
  console.error("CHAOS_SECONDS must be a number of seconds, at least 10");
  process.exit(2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)];
const say = (line: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}`);
const t0 = performance.now();

/** A child process that can be killed and started again with the same settings. */
class Proc {
  child: ChildProcess | null = null;
  kills = 0;
  private output = "";
  constructor(
    readonly name: string,
    private readonly script: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** Starts the process; resolves once it printed `ready` (at once without one). */
  async start(ready: RegExp | null): Promise<void> {
    this.output = "";
    const child = spawn(process.execPath, ["--import", "tsx", this.script], { env: { ...process.env, ...this.env }, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const take = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    const deadline = Date.now() + 60_000;
    while (ready && !ready.test(this.output)) {
      if (child.exitCode !== null) throw new Error(`${this.name} exited (${child.exitCode}) while starting:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`${this.name} did not start:\n${this.output}`);
      await sleep(25);
    }
  }

  get alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGKILL: no goodbye, no drain. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.alive) return;
    this.kills++;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  /** Process exits other than ours are failures of the run. */
  get crashed(): string | null {
    const child = this.child;
    if (!child || child.exitCode === null) return null;
    return `${this.name} exited by itself (code ${child.exitCode}):\n${this.output.slice(-3_000)}`;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.alive) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }
}

async function main(): Promise<number> {
  const dir = await mkdtemp(path.join(tmpdir(), "taskq-chaos-"));
  await chmod(dir, 0o755); // as root, the embedded Postgres runs as an unprivileged user that must reach it
  const pgPort = await freePort();
  const dataDir = path.join(dir, "data");
  let db: EmbeddedDatabase | null = await startEmbeddedPostgres({ dataDir, port: pgPort });
  const databaseUrl = db.url;
  const admin = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  admin.on("error", () => {});
  await admin.query("create table chaos_effects (id bigserial primary key, task_id bigint not null, attempt int not null, worker text not null, at timestamptz not null default now())");

  const ports = await Promise.all(Array.from({ length: REPLICAS }, freePort));
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const replicas = ports.map(
    (port, i) =>
      new Proc(`replica-${i}`, "server/main.ts", {
        DATABASE_URL: databaseUrl,
        TASKQ_PORT: String(port),
        TASKQ_STALE_CHECK_MS: String(STALE_CHECK_MS),
        TASKQ_CANCEL_GRACE_MS: "2000",
        TASKQ_POLL_INTERVAL_MS: "1000",
        TASKQ_BUILTIN_SCHEDULES: "off",
        TASKQ_LOG_LEVEL: "warn",
      }),
  );
  const workers = Array.from(
    { length: WORKERS },
    (_, i) => new Proc(`worker-${i}`, "scripts/chaos-worker.ts", { CHAOS_URL: urls[i % REPLICAS], CHAOS_DATABASE_URL: databaseUrl, CHAOS_NAME: `chaos-worker-${i}` }),
  );
  const READY_WORKER = /chaos worker .* connected/;
  /** The workers connected to each replica (worker i to replica i mod REPLICAS). */
  const workersOf = (r: Proc) => workers.filter((_, i) => i % REPLICAS === replicas.indexOf(r)).map((w) => w.name);

  const clients = urls.map((url) => new TaskClient({ url }));
  const dispatched = new Map<string, Kind>();
  const interrupts: string[] = [];
  const recoveries: { what: string; ms: number }[] = [];
  let pgRestarts = 0;
  let stopping = false;
  let failure: string | null = null;

  try {
    await Promise.all(replicas.map((r, i) => startProc(r, urls[i])));
    await Promise.all(workers.map((w) => w.start(READY_WORKER)));
    say(`${REPLICAS} replicas, ${WORKERS} workers, Postgres on port ${pgPort}; running for ${SECONDS} s`);

    /** Calls `fn` against replicas in turn until one answers (the others may be down). */
    async function anyReplica<T>(fn: (c: TaskClient) => Promise<T>): Promise<T> {
      for (let attempt = 0; ; attempt++) {
        try {
          return await fn(pick(clients));
        } catch (err) {
          // A replica that is down, restarting, or cut off from Postgres: try another. Anything else is a real answer.
          const answered = err instanceof TaskqError && [Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition].includes(err.code);
          if (answered || attempt > 2_000) throw err;
          await sleep(Math.min(50 * (attempt + 1), 500));
        }
      }
    }

    const endAt = performance.now() + SECONDS * 1000;
    const dispatchUntil = performance.now() + SECONDS * 1000 * DISPATCH_SHARE;

    // Dispatch: batches under idempotency keys, so a batch retried after an ambiguous failure queues nothing twice.
    const dispatching = (async () => {
      let n = 0;
      while (performance.now() < dispatchUntil && !failure) {
        const batch = Array.from({ length: 20 }, () => {
          const r = Math.random();
          let acc = 0;
          const kind = KIND_MIX.find(([, share]) => (acc += share) >= r)?.[0] ?? "chaos.quick";
          return { key: `chaos-${n++}`, kind };
        });
        const handles = await anyReplica((c) =>
          c.dispatchBatch(
            batch.map(({ key, kind }) => ({
              type: kind,
              idempotencyKey: key,
              maxAttempts: 100, // a lost worker costs an attempt; a failing handler fails at once whatever this says
              retryDelayMs: 100,
              title: key,
            })),
          ),
        );
        handles.forEach((h, i) => {
          dispatched.set(h.id, batch[i].kind);
          if (batch[i].kind === "chaos.interrupted") interrupts.push(h.id);
        });
        await sleep(40);
      }
    })();

    // Interrupt every long task a moment after it was dispatched.
    const interrupting = (async () => {
      while (!stopping || interrupts.length > 0) {
        const id = interrupts.shift();
        if (!id) {
          await sleep(100);
          continue;
        }
        await sleep(Math.random() * 300);
        await anyReplica((c) => c.interrupt(id, "chaos")).catch((err: unknown) => {
          if (!(err instanceof TaskqError && err.code === Code.FailedPrecondition)) throw err; // already finished is fine
        });
      }
    })();

    // Kill a running process every second or so; restart it shortly after. One Postgres restart halfway.
    const restarts = new Set<Promise<void>>();
    const killing = (async () => {
      const pgRestartAt = t0 + SECONDS * 500;
      while (performance.now() < endAt && !failure) {
        await sleep(500 + Math.random() * 1_000);
        if (performance.now() >= pgRestartAt && pgRestarts === 0) {
          say("restarting Postgres");
          const t = performance.now();
          await db!.stop();
          db = null;
          await sleep(1_000);
          db = await startEmbeddedPostgres({ dataDir, port: pgPort });
          pgRestarts++;
          say(`Postgres back after ${Math.round(performance.now() - t)} ms`);
          continue;
        }
        const candidates = (Math.random() < 0.5 ? replicas : workers).filter((p) => p.alive);
        if (candidates.length === 0) continue;
        const victim = pick(candidates);
        const holders = replicas.includes(victim) ? workersOf(victim) : [victim.name];
        const held = await heldBy(admin, holders).catch(() => null);
        await victim.kill();
        const killedAt = performance.now();
        if (held && held.length > 0) void watchRecovery(admin, held, killedAt).then((ms) => ms !== null && recoveries.push({ what: victim.name, ms }));
        const restart = (async () => {
          await sleep(300 + Math.random() * 1_200);
          if (replicas.includes(victim)) await startProc(victim, urls[replicas.indexOf(victim)]);
          else await victim.start(READY_WORKER);
        })().catch((err: unknown) => void (failure ??= String(err)));
        restarts.add(restart);
        void restart.then(() => restarts.delete(restart));
      }
      await Promise.all(restarts);
    })();

    const watchCrashes = (async () => {
      while (!stopping) {
        for (const p of [...replicas, ...workers]) {
          const crashed = p.crashed;
          if (crashed) failure = crashed;
        }
        await sleep(200);
      }
    })();

    await dispatching;
    say(`dispatched ${dispatched.size} tasks; kills go on until the end`);
    await killing;
    stopping = true;
    await interrupting;
    await watchCrashes;
    if (failure) throw new Error(failure);
    for (const p of [...replicas, ...workers]) if (!p.alive) await (replicas.includes(p) ? startProc(p, urls[replicas.indexOf(p)]) : p.start(READY_WORKER));

    say("settling: waiting for every task to reach a final status");
    const settleDeadline = performance.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const { rows } = await admin.query<{ n: number }>("select count(*)::int4 as n from taskq.tasks");
      if (rows[0].n === 0 || performance.now() > settleDeadline) break;
      await sleep(250);
    }

    const report = await verify(admin, dispatched);
    const kills = [...replicas, ...workers].reduce((n, p) => n + p.kills, 0);
    /** Median, p95 and max of the recovery times after kills of these processes. */
    const spread = (prefix: string) => {
      const ms = recoveries.filter((r) => r.what.startsWith(prefix)).map((r) => r.ms).sort((a, b) => a - b);
      const at = (f: number) => (ms.length ? Math.round(ms[Math.min(ms.length - 1, Math.floor(f * ms.length))]) : null);
      return { count: ms.length, median: at(0.5), p95: at(0.95), max: ms.length ? Math.round(ms.at(-1)!) : null };
    };
    const figures = {
      seconds: SECONDS,
      tasks: dispatched.size,
      kills,
      replicaKills: replicas.reduce((n, p) => n + p.kills, 0),
      workerKills: workers.reduce((n, p) => n + p.kills, 0),
      postgresRestarts: pgRestarts,
      ...report,
      recoveryMs: { replicaKills: spread("replica-"), workerKills: spread("worker-") },
    };
    say(`statuses: ${JSON.stringify(report.statuses)}`);
    say(`attempts re-run after a kill: ${report.reruns}`);
    for (const [what, r] of Object.entries(figures.recoveryMs)) {
      say(`leases recovered after ${what} that held some (${r.count}): median ${r.median} ms, p95 ${r.p95} ms, max ${r.max} ms`);
    }
    for (const line of report.problems.slice(0, 20)) say(`problem: ${line}`);
    if (process.env.CHAOS_JSON) await writeFile(process.env.CHAOS_JSON, `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`chaos: ${dispatched.size} tasks, ${kills} kills, ${report.lost} lost, ${report.duplicate} duplicate, ${report.stuck} stuck`);
    return report.lost === 0 && report.duplicate === 0 && report.stuck === 0 ? 0 : 1;
  } finally {
    stopping = true;
    for (const c of clients) c.close();
    await Promise.all([...workers, ...replicas].map((p) => p.stop()));
    await admin.end().catch(() => {});
    await db?.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }

  /** Starts a replica and waits until its port answers a health check. */
  async function startProc(r: Proc, url: string): Promise<void> {
    await r.start(null);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (r.crashed) throw new Error(r.crashed);
      const ok = await fetch(`${url}/metrics`).then((res) => res.ok, () => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`${r.name} did not start listening`);
      await sleep(50);
    }
  }
}

/** The running tasks (id and lease token) held by these workers: what a kill is about to orphan. */
async function heldBy(db: pg.Pool, workerNames: string[]): Promise<{ id: string; token: string }[]> {
  const { rows } = await db.query<{ id: string; token: string }>(
    "select id::text, lease_token::text as token from taskq.tasks where status = 'running' and worker = any($1)",
    [workerNames.map((n) => `chaos-${n}`)],
  );
  return rows;
}

/** How long until none of these leases is held any more (each task re-leased, finished, or back in the queue). */
async function watchRecovery(db: pg.Pool, held: { id: string; token: string }[], killedAt: number): Promise<number | null> {
  const deadline = killedAt + 60_000;
  while (performance.now() < deadline) {
    const { rows } = await db
      .query<{ n: number }>(
        "select count(*)::int4 as n from taskq.tasks t join unnest($1::int8[], $2::uuid[]) as h(id, token) on t.id = h.id and t.lease_token = h.token",
        [held.map((h) => h.id), held.map((h) => h.token)],
      )
      .catch(() => ({ rows: [{ n: -1 }] }));
    if (rows[0].n === 0) return performance.now() - killedAt;
    await sleep(50);
  }
  return null;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    console.log("chaos: run failed before its checks (see above)");
    process.exit(1);
  },
);
