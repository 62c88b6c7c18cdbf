/**
 * The faults of the chaos run (scripts/chaos.ts) and the order they come in.
 *
 *   kill-replica       SIGKILL a replica; start it again 0.3–1.5 s later
 *   kill-worker        SIGKILL a worker; the same
 *   stop-replica       SIGSTOP a replica, SIGCONT it 0.5–1.8 s or 2.2–3 s later (past S, in turns); every
 *                      other stop waits for one of its claims to be running in Postgres first, and the
 *                      statements it had in flight at the stop (claims among them) are logged
 *   stop-worker        the same for a worker
 *   db-partition       the proxy between replica-0 and Postgres stops delivering up, down or both ways,
 *                      0.3–1.8 s or 2.2–3.5 s, then releases or resets every connection (in turns)
 *   worker-partition   a worker's proxy to its replica does the same, 0.5–1.8 s or 2.2–4 s
 *   kill-in-db-outage  replica-0's proxy to Postgres holds both ways for 0.2–0.5 s; one of its workers is
 *                      SIGKILLed within it; then the proxy releases and the worker starts again
 *   postgres-restart   Postgres stops for a second, once, halfway (run by the scheduler itself)
 *   clock-skew         replica-1's clock runs 300 s ahead and replica-2's 300 s behind the whole run
 *                      (libfaketime; recorded by chaos.ts when each starts)
 *
 * The processes are in three groups, one per replica: the replica and the workers connected to it. A
 * fault takes a whole group, so faults on different groups overlap and each fault's effect on leases
 * belongs to it alone. The scheduler deals the faults from a shuffled deck: it starts the first one in
 * the deck whose group is free, waits 0.5–1.5 s, and so on; a fault is never skipped, only delayed, so
 * every class comes once in each deck whatever the timing. If some class has not come by the end of
 * the run (a slow machine), faults go on until it has: they wait for it, not for a time, and give up
 * only if no fault at all could be dealt for a long while (a process that never comes back).
 */
import type pg from "pg";
import type { TcpProxy, Direction } from "./tcp-proxy.js";
import { between, pick, say, sleep, type Proc } from "./chaos-procs.js";

/** Every fault class; the run goes on until each has come at least once. */
export const FAULT_CLASSES = [
  "kill-replica",
  "kill-worker",
  "stop-replica",
  "stop-worker",
  "db-partition",
  "worker-partition",
  "kill-in-db-outage",
  "postgres-restart",
  "clock-skew",
] as const;

export type FaultClass = (typeof FAULT_CLASSES)[number];

/** One deck: kills come twice as often as the other faults. */
const DECK: FaultClass[] = [
  "kill-replica",
  "kill-replica",
  "kill-worker",
  "kill-worker",
  "stop-replica",
  "stop-worker",
  "db-partition",
  "worker-partition",
  "kill-in-db-outage",
];

/** What happened, for the log and the verdict. Times are the host's clock (Date.now()). */
export interface Fault {
  n: number;
  cls: FaultClass;
  /** The process or proxy acted on. */
  victim: string;
  /** The workers (names as in tasks.worker) whose leases the fault puts at risk. */
  workers: string[];
  startedAt: number;
  /** When the process was back (SIGCONT, proxy released or reset); null after a kill: that process is gone. */
  endedAt: number | null;
  detail: string;
}

export interface FaultTargets {
  replicas: Proc[];
  workers: Proc[];
  /** The name each worker gives the server (tasks.worker), by index. */
  workerNames: string[];
  /** Worker i's proxy to its replica. */
  workerProxies: TcpProxy[];
  /** replica-0's proxy to Postgres. */
  dbProxy: TcpProxy;
  admin: pg.Pool;
  /** Starts a process that is down and waits until it is ready. */
  restart(p: Proc): Promise<void>;
  /** Stops Postgres and starts it again after a second. */
  restartPostgres(): Promise<void>;
  /** The application_name each replica's database connections carry. */
  replicaApp(i: number): string;
}

export class Faults {
  readonly log: Fault[] = [];
  private readonly busy = new Set<number>();
  private readonly running = new Set<Promise<void>>();
  private readonly turns = new Map<string, number>();
  private failure: string | null = null;

  constructor(private readonly t: FaultTargets) {}

  /** Faults of each class so far. */
  counts(): Record<FaultClass, number> {
    const counts = Object.fromEntries(FAULT_CLASSES.map((c) => [c, 0])) as Record<FaultClass, number>;
    for (const f of this.log) counts[f.cls]++;
    return counts;
  }

  /** Records a fault that is not the scheduler's (the clock skew, set up before the run). */
  note(cls: FaultClass, victim: string, detail: string): void {
    this.record({ cls, victim, workers: [], startedAt: Date.now(), endedAt: null, detail });
  }

  /**
   * Deals faults while `goOn()`, and after that until every class has come at least once; restarts
   * Postgres once at `postgresAt` (performance.now()). Past `goOn()`, it gives up on the classes still
   * missing once no fault could be dealt for `stallMs` (every group busy or down all that time). Resolves
   * when every fault it started is over and every process is back; rejects with the first fault that
   * failed.
   */
  async run(goOn: () => boolean, stallMs: number, postgresAt: number): Promise<void> {
    let deck: FaultClass[] = [];
    let dealtAt = performance.now();
    const covered = () => FAULT_CLASSES.every((c) => this.log.some((f) => f.cls === c));
    while (!this.failure && (goOn() || !covered())) {
      if (!goOn() && performance.now() - dealtAt > stallMs) {
        const missing = FAULT_CLASSES.filter((c) => !this.log.some((f) => f.cls === c));
        say(`faults: gave up on ${missing.join(", ")}: no fault could be dealt for ${stallMs / 1000} s`);
        break;
      }
      await sleep(between(500, 1_500));
      if (performance.now() >= postgresAt && !this.log.some((f) => f.cls === "postgres-restart")) {
        await this.postgresRestart();
        dealtAt = performance.now();
        continue;
      }
      if (deck.length === 0) deck = shuffled(DECK);
      const at = deck.findIndex((cls) => this.freeGroup(cls) !== null);
      if (at < 0) continue;
      dealtAt = performance.now();
      const cls = deck.splice(at, 1)[0];
      const group = this.freeGroup(cls)!;
      this.busy.add(group);
      const fault = this.inflict(cls, group)
        .catch((err: unknown) => {
          this.failure ??= `fault ${cls} failed: ${err instanceof Error ? err.stack : String(err)}`;
        })
        .finally(() => {
          this.busy.delete(group);
          this.running.delete(fault);
        });
      this.running.add(fault);
    }
    while (this.running.size > 0) await Promise.all(this.running);
    if (this.failure) throw new Error(this.failure);
  }

  /** A free group whose processes are all up and that this fault can act on, if any. */
  private freeGroup(cls: FaultClass): number | null {
    const groups = cls === "db-partition" || cls === "kill-in-db-outage" ? [0] : this.t.replicas.map((_, i) => i);
    const free = groups.filter((g) => !this.busy.has(g) && this.members(g).every((p) => p.alive && !p.paused));
    return free.length > 0 ? pick(free) : null;
  }

  private members(group: number): Proc[] {
    return [this.t.replicas[group], ...this.workersOf(group)];
  }

  private workersOf(group: number): Proc[] {
    return this.t.workers.filter((_, i) => i % this.t.replicas.length === group);
  }

  private nameOf(w: Proc): string {
    return this.t.workerNames[this.t.workers.indexOf(w)];
  }

  private inflict(cls: FaultClass, group: number): Promise<void> {
    const replica = this.t.replicas[group];
    const worker = pick(this.workersOf(group));
    const groupWorkers = this.workersOf(group).map((w) => this.nameOf(w));
    switch (cls) {
      case "kill-replica":
        return this.kill(cls, replica, groupWorkers);
      case "kill-worker":
        return this.kill(cls, worker, [this.nameOf(worker)]);
      case "stop-replica":
        return this.stop(cls, replica, groupWorkers, this.t.replicaApp(group));
      case "stop-worker":
        return this.stop(cls, worker, [this.nameOf(worker)], null);
      case "db-partition":
        return this.partition(cls, this.t.dbProxy, `${replica.name}↔postgres`, groupWorkers, [300, 1_800], [2_200, 3_500]);
      case "worker-partition":
        return this.partition(cls, this.t.workerProxies[this.t.workers.indexOf(worker)], `${worker.name}↔${replica.name}`, [this.nameOf(worker)], [500, 1_800], [2_200, 4_000]);
      case "kill-in-db-outage":
        return this.killInOutage(worker, replica);
      default:
        throw new Error(`${cls} is not dealt by the scheduler`);
    }
  }

  private async kill(cls: FaultClass, p: Proc, workers: string[]): Promise<void> {
    const pid = p.pid;
    await p.kill();
    const f = this.record({ cls, victim: p.name, workers, startedAt: p.lives.at(-1)!.diedAt!, endedAt: null, detail: `SIGKILL pid ${pid}` });
    say(`fault #${f.n} ${cls}: SIGKILL ${p.name} (pid ${pid})`);
    await sleep(between(300, 1_500));
    await this.t.restart(p);
    say(`fault #${f.n} ${cls}: ${p.name} started again (pid ${p.pid})`);
  }

  private async stop(cls: FaultClass, p: Proc, workers: string[], app: string | null): Promise<void> {
    const ms = this.duration(cls, [500, 1_800], [2_200, 3_000]);
    // Every other replica stop waits (up to 1.5 s) for a claim of that replica to be running in Postgres.
    const aimed = app !== null && this.turn(`${cls}:aim`, [true, false]);
    if (aimed) await this.claimRunning(app);
    if (!p.alive || p.paused) return; // it crashed meanwhile (reported as such)
    p.pause();
    const f = this.record({ cls, victim: p.name, workers, startedAt: p.lives.at(-1)!.pauses.at(-1)!.from, endedAt: null, detail: `SIGSTOP pid ${p.pid} for ${ms} ms` });
    try {
      const inFlight = app ? await this.inFlight(app, f.startedAt) : "";
      f.detail += `${aimed ? ", aimed at a claim" : ""}${inFlight ? `; ${inFlight}` : ""}`;
      say(`fault #${f.n} ${cls}: SIGSTOP ${p.name} (pid ${p.pid}) for ${ms} ms${aimed ? ", aimed at a claim" : ""}${inFlight ? ` — ${inFlight}` : ""}`);
      await sleep(ms - (Date.now() - f.startedAt));
    } finally {
      p.resume();
      f.endedAt = p.lives.at(-1)!.pauses.at(-1)!.to;
    }
    say(`fault #${f.n} ${cls}: SIGCONT ${p.name} after ${f.endedAt! - f.startedAt} ms`);
  }

  /** Waits until a claim of this replica's is running in Postgres, or 1.5 s. */
  private async claimRunning(app: string): Promise<void> {
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      const { rows } = await this.t.admin
        .query("select 1 from pg_stat_activity where application_name = $1 and state = 'active' and query like '%with groups as%'", [app])
        .catch(() => ({ rows: [] }));
      if (rows.length > 0) return;
      await sleep(2);
    }
  }

  /**
   * What a paused replica had in flight in Postgres: its statements still running or in an open
   * transaction, or that finished after the SIGSTOP (their answers wait unread); how many are claims.
   */
  private async inFlight(app: string, pausedAt: number): Promise<string> {
    const { rows } = await this.t.admin
      .query<{ state: string; claim: boolean; changed: number }>(
        `select state, query like '%with groups as%' as claim, extract(epoch from state_change)::float8 * 1000 as changed
         from pg_stat_activity where application_name = $1 and query <> ''`,
        [app],
      )
      .catch(() => ({ rows: [] })); // Postgres may be restarting
    const open = rows.filter((r) => r.state !== "idle" || r.changed >= pausedAt);
    const claims = open.filter((r) => r.claim).length;
    if (claims > 0) this.claimsCaught++;
    return open.length > 0 ? `${open.length} statement(s) in flight in Postgres, ${claims} of them claims` : "";
  }

  /** Replica stops that caught a claim in flight. */
  claimsCaught = 0;

  private async partition(cls: FaultClass, proxy: TcpProxy, link: string, workers: string[], short: [number, number], long: [number, number]): Promise<void> {
    const ms = this.duration(cls, short, long);
    const direction = this.turn<Direction>(`${cls}:direction`, ["up", "down", "both"]);
    const ending = this.turn(`${cls}:ending`, ["release", "reset"] as const);
    proxy.hold(direction);
    const f = this.record({ cls, victim: link, workers, startedAt: Date.now(), endedAt: null, detail: `hold ${direction} for ${ms} ms, then ${ending}` });
    say(`fault #${f.n} ${cls}: ${link} holds ${direction} for ${ms} ms (${proxy.connections} connections), then ${ending}s`);
    try {
      await sleep(ms);
    } finally {
      if (ending === "reset") proxy.reset();
      proxy.release();
      f.endedAt = Date.now();
    }
    say(`fault #${f.n} ${cls}: ${link} ${ending === "reset" ? "reset" : "released"} after ${f.endedAt - f.startedAt} ms`);
  }

  private async killInOutage(worker: Proc, replica: Proc): Promise<void> {
    const outage = between(200, 500);
    const killAfter = between(0, outage - 100);
    const held = Date.now();
    this.t.dbProxy.hold("both");
    let f: Fault;
    try {
      await sleep(killAfter);
      const pid = worker.pid;
      await worker.kill();
      const killedAt = worker.lives.at(-1)!.diedAt!;
      const detail = `${replica.name}↔postgres held both ways for ${outage} ms; SIGKILL ${worker.name} (pid ${pid}) ${killedAt - held} ms into it`;
      f = this.record({ cls: "kill-in-db-outage", victim: worker.name, workers: [this.nameOf(worker)], startedAt: killedAt, endedAt: null, detail });
      await sleep(outage - (Date.now() - held));
    } finally {
      this.t.dbProxy.release();
    }
    say(`fault #${f.n} kill-in-db-outage: ${f.detail}; released after ${Date.now() - held} ms`);
    await sleep(between(300, 1_500));
    await this.t.restart(worker);
    say(`fault #${f.n} kill-in-db-outage: ${worker.name} started again (pid ${worker.pid})`);
  }

  private async postgresRestart(): Promise<void> {
    const f = this.record({ cls: "postgres-restart", victim: "postgres", workers: [], startedAt: Date.now(), endedAt: null, detail: "" });
    say(`fault #${f.n} postgres-restart: stopping Postgres`);
    await this.t.restartPostgres();
    f.endedAt = Date.now();
    f.detail = `down ${f.endedAt - f.startedAt} ms`;
    say(`fault #${f.n} postgres-restart: Postgres back after ${f.endedAt - f.startedAt} ms`);
  }

  /** A duration in `short` or `long` (past the stale-check interval), each class taking them in turns. */
  private duration(cls: FaultClass, short: [number, number], long: [number, number]): number {
    const [from, to] = this.turn(`${cls}:length`, [short, long]);
    return between(from, to);
  }

  /** The next of `options` for this key, in turns from a random first one. */
  private turn<T>(key: string, options: readonly T[]): T {
    const n = this.turns.get(key) ?? Math.floor(Math.random() * options.length);
    this.turns.set(key, n + 1);
    return options[n % options.length];
  }

  private record(f: Omit<Fault, "n">): Fault {
    const fault = { n: this.log.length + 1, ...f };
    this.log.push(fault);
    return fault;
  }
}

function shuffled<T>(xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
