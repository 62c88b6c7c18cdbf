/**
 * The chaos run's figures (scripts/chaos.ts), for CHAOS_JSON, and its closing lines: a line per figure,
 * and its problems, a few of each kind.
 */
import type { Report } from "./chaos-check.js";
import type { Cluster } from "./chaos-cluster.js";
import type { Faults } from "./chaos-faults.js";
import { say } from "./chaos-procs.js";
import type { RunReport } from "./chaos-runs.js";

export interface FiguresInput {
  seconds: number;
  cluster: Cluster;
  faults: Faults;
  tasks: number;
  /** What each crash said. */
  crashes: string[];
  report: Report;
  runs: RunReport;
}

export type Figures = ReturnType<typeof figuresOf>;

export function figuresOf({ seconds, cluster: c, faults, tasks, crashes, report, runs }: FiguresInput) {
  const kills = (ps: { kills: number }[]) => ps.reduce((n, p) => n + p.kills, 0);
  const counts = faults.counts();
  const problems = [...crashes.map((line) => `crash: ${line.split("\n")[0]}`), ...report.problems, ...runs.problems];
  return {
    seconds,
    tasks,
    kills: kills(c.procs),
    replicaKills: kills(c.replicas),
    workerKills: kills(c.workers),
    postgresRestarts: counts["postgres-restart"],
    crashes: crashes.length,
    faults: counts,
    stopsWithClaimInFlight: faults.claimsCaught,
    lost: report.lost,
    duplicate: report.duplicate,
    stuck: report.stuck,
    runsAfterFinal: runs.afterFinal,
    runsOnTakenBackLeases: runs.onTakenBack,
    statuses: report.statuses,
    reruns: report.reruns,
    retries: report.retries,
    executions: runs.runs,
    executionsUnended: runs.unended,
    overlaps: runs.overlaps,
    runsPastLease: runs.pastLease,
    abortToEndMaxMs: runs.abortToEndMaxMs,
    recoveryMs: runs.recovery,
    clockSkewS: { dateHeader: Object.fromEntries(c.measuredSkew), engineLeases: runs.engineSkewS },
    problemCauses: runs.causes,
    /** Every problem (the first 500 in the JSON). */
    problems,
    faultLog: faults.log,
    processes: c.procs.flatMap((p) => p.lives),
  };
}

export function printReport(f: Figures, staleCheckMs: number): void {
  say(`statuses: ${JSON.stringify(f.statuses)}; attempts re-run: ${f.reruns}; tasks retried by an operator: ${f.retries}`);
  say(`faults: ${Object.entries(f.faults).map(([c, n]) => `${c} ${n}`).join(", ")}; replica stops that caught a claim in flight: ${f.stopsWithClaimInFlight}`);
  say(`executions: ${f.executions}, ${f.executionsUnended} still going at the end; longest abort → end: ${f.abortToEndMaxMs} ms`);
  for (const [kind, o] of Object.entries(f.overlaps)) say(`overlapping attempts, older one ${kind}: ${o.count}, ${o.totalMs} ms in all, longest ${o.maxMs} ms`);
  say(`executions that ran on more than S past their lease, unpaused: ${f.runsPastLease.count}, longest ${f.runsPastLease.maxMs} ms`);
  for (const [cls, r] of Object.entries(f.recoveryMs)) {
    say(`recovery after ${cls} (${r.withLeases} that held leases): ${r.recovered} recovered, median ${r.medianMs} ms, max ${r.maxMs} ms; ${r.backFirst} came back first; ${r.overS} over S = ${staleCheckMs} ms`);
  }
  say(`clock skew (s): Date headers ${JSON.stringify(f.clockSkewS.dateHeader)}; leases' started_at vs the database ${JSON.stringify(f.clockSkewS.engineLeases)}`);
  const byKind = new Map<string, string[]>();
  for (const p of f.problems) {
    const kind = p.slice(0, p.indexOf(":"));
    const lines = byKind.get(kind);
    if (lines) lines.push(p);
    else byKind.set(kind, [p]);
  }
  for (const [kind, causes] of Object.entries(f.problemCauses)) {
    say(`${kind}, by the faults near it: ${Object.entries(causes).map(([c, n]) => `${c} ${n}`).join(", ")}`);
  }
  for (const [kind, lines] of byKind) {
    say(`problems: ${lines.length} × ${kind}`);
    for (const line of lines.slice(0, 5)) say(`  ${line}`);
  }
}
