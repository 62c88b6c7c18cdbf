/**
 * The chaos run's verdict on executions and leases (scripts/chaos.ts), from chaos_runs and the lease
 * trigger's chaos_lease_events (chaos-db.ts), the faults (chaos-faults.ts) and the processes' lives
 * (chaos-procs.ts). All times are on the database host's clock, in ms.
 *
 *   runs after final          an execution that started after its task's final status was recorded (the
 *                             trigger's delete time; history.finished_at is the replica's clock)
 *   runs on taken-back leases an execution that started after its lease ended. An execution is known by
 *                             task and attempt (the SDK does not give handlers the lease token); its lease
 *                             is the last one of that task and attempt granted before it started (an
 *                             attempt number comes again only after a lease that never reached a worker)
 *   overlaps                  two executions of one task, different attempts, running at once, by what
 *                             the older one did: paused (SIGSTOPped during the overlap: it could honour
 *                             nothing), honoured (it ended because its signal aborted: the overlap is how
 *                             late the signal came), killed (it never ended: its process was killed while
 *                             it ran), unaware (it returned without its signal ever aborting)
 *   past lease                executions still running more than S after their lease ended, unpaused
 *   recovery                  per fault that lost a process: the time from the fault until none of the
 *                             leases the process held (or was granted while lost) is held any more.
 *                             Judged after a kill, and after a stop or partition unless the process came
 *                             back first; over S is flagged
 *
 * Each problem is also counted against the faults near it (faultsNear), to say what produced it.
 */
import type pg from "pg";
import type { Fault, FaultClass } from "./chaos-faults.js";
import type { ProcessLife } from "./chaos-procs.js";

interface Run {
  taskId: string;
  attempt: number;
  worker: string;
  pid: number;
  start: number;
  /** Recorded end; null when its process died first. */
  end: number | null;
  endKind: string | null;
  abortedAt: number | null;
  recordedAt: number;
}

interface Lease {
  taskId: string;
  attempt: number;
  worker: string;
  start: number;
  end: number;
  /** tasks.started_at as the leasing replica wrote it. */
  engineAt: number;
}

export interface Overlap {
  count: number;
  totalMs: number;
  maxMs: number;
}

type OverlapKind = "paused" | "honoured" | "killed" | "unaware";

export interface Recovery {
  /** Faults of this class that put leases at risk. */
  withLeases: number;
  /** Judged: every lease ended while the process was lost (or after a kill). */
  recovered: number;
  medianMs: number | null;
  maxMs: number | null;
  /** The process came back before its leases were recovered, within S: not judged. */
  backFirst: number;
  /** Leases held longer than S after the process was lost. */
  overS: number;
}

export interface RunReport {
  runs: number;
  afterFinal: number;
  onTakenBack: number;
  /** Executions still going when the run ended (their task long final). */
  unended: number;
  overlaps: Record<OverlapKind, Overlap>;
  pastLease: { count: number; maxMs: number };
  /** Longest time from an abort to the end of the execution that honoured it. */
  abortToEndMaxMs: number | null;
  recovery: Partial<Record<FaultClass, Recovery>>;
  /** Median of (tasks.started_at − trigger time) of each replica's leases, in seconds: its clock's skew as the engine uses it. */
  engineSkewS: Record<string, number | null>;
  /** Problems by kind, then by the faults near them. */
  causes: Record<string, Record<string, number>>;
  problems: string[];
}

export interface RunInputs {
  faults: Fault[];
  lives: ProcessLife[];
  staleCheckMs: number;
  /** The replica each worker (name as in tasks.worker) is connected to. */
  replicaOf: Map<string, string>;
}

export async function verifyRuns(db: pg.Pool, inputs: RunInputs): Promise<RunReport> {
  const { runs, leases, finals } = await load(db);
  return new RunVerdict(inputs, runs, leases, finals).report();
}

class RunVerdict {
  private readonly now = Date.now();
  private readonly problems: string[] = [];
  private readonly causes: Record<string, Record<string, number>> = {};
  private readonly leasesOf: Map<string, Lease[]>;
  private readonly lives: ProcessLife[];

  constructor(
    private readonly inputs: RunInputs,
    private readonly runs: Run[],
    private readonly leases: Lease[],
    private readonly finals: Map<string, number>,
  ) {
    this.leasesOf = groupBy(leases, (l) => `${l.taskId}:${l.attempt}`);
    for (const ls of this.leasesOf.values()) ls.sort((a, b) => a.start - b.start);
    this.lives = [...inputs.lives].sort((a, b) => a.startedAt - b.startedAt);
  }

  report(): RunReport {
    const { afterFinal, onTakenBack, unended, pastLease } = this.starts();
    const overlaps = this.overlaps();
    let abortToEndMaxMs: number | null = null;
    for (const r of this.runs) {
      if (r.endKind === "aborted" && r.abortedAt !== null && r.end !== null) abortToEndMaxMs = Math.max(abortToEndMaxMs ?? 0, Math.round(r.end - r.abortedAt));
    }
    const recovery = this.recoveries();
    const engineSkewS: Record<string, number | null> = {};
    for (const [replica, ls] of groupBy(this.leases, (l) => this.inputs.replicaOf.get(l.worker) ?? "?")) {
      const skews = ls.map((l) => l.engineAt - l.start).sort((a, b) => a - b);
      engineSkewS[replica] = skews.length ? Math.round(skews[Math.floor(skews.length / 2)] / 100) / 10 : null;
    }
    const { causes, problems } = this;
    return { runs: this.runs.length, afterFinal, onTakenBack, unended, overlaps, pastLease, abortToEndMaxMs, recovery, engineSkewS, causes, problems };
  }

  /** Each execution against its task's end and its lease: after final, on a taken-back lease, past its lease. */
  private starts() {
    let afterFinal = 0;
    let onTakenBack = 0;
    let unended = 0;
    const pastLease = { count: 0, maxMs: 0 };
    const S = this.inputs.staleCheckMs;
    for (const r of this.runs) {
      const what = `task ${r.taskId} attempt ${r.attempt} on ${r.worker}`;
      if (r.recordedAt < r.start) this.problem("clocks", `the run of ${what} was recorded before it started`);
      const final = this.finals.get(r.taskId);
      if (final !== undefined && final < r.start) {
        afterFinal++;
        this.problem("run after final", `${what} started ${Math.round(r.start - final)} ms after the task ended`, r.worker, final, r.start);
      }
      const lease = (this.leasesOf.get(`${r.taskId}:${r.attempt}`) ?? []).filter((l) => l.start <= r.start + 1).at(-1);
      if (!lease) {
        onTakenBack++;
        this.problem("run on no lease", `${what} started with no lease of that attempt granted before`, r.worker, r.start, r.start);
      } else if (lease.end < r.start) {
        onTakenBack++;
        this.problem("run on a taken-back lease", `${what} started ${Math.round(r.start - lease.end)} ms after its lease ended`, r.worker, lease.end, r.start);
      } else if (this.endOf(r) - lease.end > S && !this.pausedWithin(r, lease.end, this.endOf(r))) {
        const late = Math.round(this.endOf(r) - lease.end);
        pastLease.count++;
        pastLease.maxMs = Math.max(pastLease.maxMs, late);
        const how = r.end !== null ? r.endKind : this.lifeOf(r)?.diedAt != null ? "until its process was killed" : "and still runs";
        this.problem("run past its lease", `${what} ran on ${late} ms after its lease ended (${how})`, r.worker, lease.end, this.endOf(r));
      }
      if (r.end === null && this.lifeOf(r)?.diedAt == null) {
        unended++;
        this.problem("run still going at the end", `${what}, started ${Math.round(this.now - r.start)} ms ago`);
      }
    }
    return { afterFinal, onTakenBack, unended, pastLease };
  }

  /** Overlapping executions of one task's different attempts, by what the older one did. */
  private overlaps(): Record<OverlapKind, Overlap> {
    const zero = (): Overlap => ({ count: 0, totalMs: 0, maxMs: 0 });
    const overlaps: Record<OverlapKind, Overlap> = { paused: zero(), honoured: zero(), killed: zero(), unaware: zero() };
    for (const rs of groupBy(this.runs, (r) => r.taskId).values()) {
      for (let i = 0; i < rs.length; i++) {
        for (let j = i + 1; j < rs.length; j++) {
          const [older, newer] = rs[i].attempt < rs[j].attempt ? [rs[i], rs[j]] : [rs[j], rs[i]];
          if (older.attempt === newer.attempt) continue; // one attempt run twice: a duplicate (chaos-check.ts)
          const from = Math.max(older.start, newer.start);
          const to = Math.min(this.endOf(older), this.endOf(newer));
          if (to <= from) continue;
          const kind: OverlapKind = this.pausedWithin(older, from, to)
            ? "paused"
            : older.endKind === "aborted"
              ? "honoured"
              : older.end === null
                ? "killed"
                : "unaware";
          const o = overlaps[kind];
          o.count++;
          o.totalMs += to - from;
          o.maxMs = Math.max(o.maxMs, to - from);
          const text = `task ${older.taskId} attempts ${older.attempt} (${older.worker}) and ${newer.attempt} (${newer.worker}) ran together for ${Math.round(to - from)} ms`;
          this.problem(`overlap, older one ${kind}`, text, older.worker, from, to);
        }
      }
    }
    for (const o of Object.values(overlaps)) {
      o.totalMs = Math.round(o.totalMs);
      o.maxMs = Math.round(o.maxMs);
    }
    return overlaps;
  }

  /** Recovery time of each fault that lost a process holding leases; see the file comment. */
  private recoveries(): Partial<Record<FaultClass, Recovery>> {
    const S = this.inputs.staleCheckMs;
    const byClass: Partial<Record<FaultClass, Recovery & { times: number[] }>> = {};
    for (const f of this.inputs.faults) {
      if (f.workers.length === 0) continue;
      // After a kill, the leases held at that moment (the worker's name comes back with its next process);
      // during a stop or a partition, those and the ones granted to the lost process meanwhile.
      const lostUntil = f.endedAt ?? Infinity;
      const atRisk = this.leases.filter(
        (l) => f.workers.includes(l.worker) && (l.start <= f.startedAt ? l.end > f.startedAt : f.endedAt !== null && l.start < f.endedAt),
      );
      if (atRisk.length === 0) continue;
      const c = byClass[f.cls] ?? { withLeases: 0, recovered: 0, medianMs: null, maxMs: null, backFirst: 0, overS: 0, times: [] };
      byClass[f.cls] = c;
      c.withLeases++;
      const since = (l: Lease) => Math.max(f.startedAt, l.start);
      const recoveredMs = Math.max(...atRisk.map((l) => l.end - since(l)));
      const heldWhileLostMs = Math.max(...atRisk.map((l) => Math.min(l.end, lostUntil) - since(l)));
      const allWhileLost = atRisk.every((l) => l.end <= lostUntil);
      if (allWhileLost) {
        c.recovered++;
        c.times.push(recoveredMs);
      } else if (heldWhileLostMs <= S) {
        c.backFirst++;
      }
      if (heldWhileLostMs > S) {
        c.overS++;
        const how = allWhileLost ? `recovered after ${Math.round(recoveredMs)} ms` : `still held ${Math.round(heldWhileLostMs)} ms later, when it came back`;
        this.problem("recovery over S", `fault #${f.n} ${f.cls} ${f.victim} (${f.detail}): ${atRisk.length} lease(s), ${how}`);
      }
    }
    const out: Partial<Record<FaultClass, Recovery>> = {};
    for (const [cls, { times, ...c }] of Object.entries(byClass) as [FaultClass, Recovery & { times: number[] }][]) {
      times.sort((a, b) => a - b);
      c.medianMs = times.length ? Math.round(times[Math.floor(times.length / 2)]) : null;
      c.maxMs = times.length ? Math.round(times.at(-1)!) : null;
      out[cls] = c;
    }
    return out;
  }

  /** A problem line; when it concerns a worker at a time, it is also counted against the faults near it. */
  private problem(kind: string, text: string, worker?: string, from?: number, to?: number): void {
    if (worker === undefined || from === undefined || to === undefined) {
      this.problems.push(`${kind}: ${text}`);
      return;
    }
    const near = this.faultsNear(worker, from, to);
    const byCause = this.causes[kind] ?? {};
    this.causes[kind] = byCause;
    byCause[near] = (byCause[near] ?? 0) + 1;
    this.problems.push(`${kind}: ${text} (near: ${near})`);
  }

  /**
   * The fault classes that touched this worker (it, its replica, its replica's link to Postgres, or
   * Postgres itself) from S before `from` until `to`, joined with "+": the likely cause of a problem
   * seen then. The skewed clocks touch every task all the time (any replica may dispatch, interrupt,
   * finish or recover it), so they are named only when nothing else is near.
   */
  private faultsNear(worker: string, from: number, to: number): string {
    const classes = new Set<string>();
    for (const f of this.inputs.faults) {
      if (!f.workers.includes(worker) && f.cls !== "postgres-restart") continue;
      if (f.startedAt <= to && (f.endedAt ?? f.startedAt) >= from - this.inputs.staleCheckMs) classes.add(f.cls);
    }
    return classes.size > 0 ? [...classes].sort().join("+") : "no fault nearby but the skewed clocks";
  }

  /** A run's process: the last one with its pid that started before it (pids are reused in a long run). */
  private lifeOf(r: Run): ProcessLife | undefined {
    return this.lives.filter((l) => l.pid === r.pid && l.startedAt <= r.start).at(-1);
  }

  /** When a run ended: its recorded end, else its process's death, else (still going) now. */
  private endOf(r: Run): number {
    return r.end ?? this.lifeOf(r)?.diedAt ?? this.now;
  }

  private pausedWithin(r: Run, from: number, to: number): boolean {
    return (this.lifeOf(r)?.pauses ?? []).some((p) => p.from < to && (p.to ?? this.now) > from);
  }
}

async function load(db: pg.Pool): Promise<{ runs: Run[]; leases: Lease[]; finals: Map<string, number> }> {
  const ms = (col: string) => `extract(epoch from ${col})::float8 * 1000`;
  const runs = await db.query<Run>(
    `select task_id::text as "taskId", attempt, worker, pid, ${ms("started_at")} as start, ${ms("ended_at")} as end,
            end_kind as "endKind", ${ms("aborted_at")} as "abortedAt", ${ms("recorded_at")} as "recordedAt"
     from chaos_runs order by started_at`,
  );
  const events = await db.query<{ task_id: string; event: string; attempt: number; token: string; worker: string; engine_at: number; at: number }>(
    `select task_id::text, event, attempt, token::text, worker, ${ms("engine_at")} as engine_at, ${ms("at")} as at
     from chaos_lease_events order by seq`,
  );
  const byToken = new Map<string, Lease>();
  const finals = new Map<string, number>();
  for (const e of events.rows) {
    if (e.event === "final") finals.set(e.task_id, e.at);
    else if (e.event === "leased") byToken.set(e.token, { taskId: e.task_id, attempt: e.attempt, worker: e.worker, start: e.at, end: Infinity, engineAt: e.engine_at });
    else {
      const lease = byToken.get(e.token);
      if (lease) lease.end = e.at;
    }
  }
  return { runs: runs.rows, leases: [...byToken.values()], finals };
}

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const list = m.get(k);
    if (list) list.push(x);
    else m.set(k, [x]);
  }
  return m;
}
