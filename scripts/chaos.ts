/**
 * `npm run chaos`: the crash test. Three server replicas and four worker processes share one Postgres
 * (chaos-cluster.ts). For CHAOS_SECONDS (default 300) tasks are dispatched (chaos-traffic.ts: quick,
 * slow, retrying, snoozing, deadline-extending, failing ones that an operator retries, and long ones
 * that get interrupted) while faults are dealt at random
 * (chaos-faults.ts): SIGKILL, SIGSTOP/SIGCONT, stalled or reset links between a replica and Postgres and
 * between a worker and its replica, a worker killed during its replica's short database outage, one
 * Postgres restart, and two replicas whose clocks are 300 s ahead and behind. Then the run waits for
 * the queue to settle and checks every task (chaos-check.ts) and every execution of a handler against
 * the leases (chaos-runs.ts):
 *
 *   lost       dispatched but missing, still pending, or not in its expected final status (a completed
 *              task must also have the side effect of the attempt that completed it)
 *   duplicate  an outcome recorded twice (a task both active and finished), or one attempt run twice
 *   stuck      left RUNNING or CANCELLING, or ended STUCK
 *   runs after final            an execution that started after its task's final status was recorded
 *   runs on taken-back leases   an execution that started after its lease had ended
 *
 * A quarter of the traffic is keyed, in a queue whose keys are limited in how many run at once and how
 * often they start (chaos-keys.ts); a key over either limit fails the run like a lost task.
 *
 * It also reports overlapping executions and how long each lost process's leases took to be recovered.
 * The last line is exactly `chaos: N tasks, K kills, L lost, D duplicate, S stuck, A runs after final,
 * B runs on taken-back leases`; the exit code is 0 only when L, D, S, A and B are all 0, no key went over
 * its limits (the line before says), no process
 * crashed and dispatching never stalled (below). CHAOS_JSON names a file for the figures as JSON;
 * CHAOS_DUMP a folder for the chaos tables (executions, lease events, side effects, finished tasks) as
 * JSON lines, to look into problems.
 * CHAOS_MIN_TASKS (default 0): dispatching goes on past its time until that many were dispatched, and
 * faults go on with it, so that a slow machine still gets the load a test asks for: the run waits for
 * the tasks, not for a time. Dispatching gives up only when no replica accepted a batch for a minute
 * (STALL_MS), and the run then exits 1 whatever its counts: the cluster took no work all that time.
 */
import { writeFile } from "node:fs/promises";
import { verify } from "./chaos-check.js";
import { CLOCK_OFFSET_S, Cluster } from "./chaos-cluster.js";
import { chaosTablesDump } from "./chaos-db.js";
import { Faults } from "./chaos-faults.js";
import { KeySampler, keysLine, keysVerify } from "./chaos-keys.js";
import { killEverything, say, sleep } from "./chaos-procs.js";
import { figuresOf, printReport } from "./chaos-report.js";
import { verifyRuns } from "./chaos-runs.js";
import { Traffic } from "./chaos-traffic.js";

const SECONDS = Number(process.env.CHAOS_SECONDS ?? 300);
/** Dispatching stops this far into the run; the faults go on until the end. */
const DISPATCH_SHARE = 0.8;
const SETTLE_TIMEOUT_MS = 120_000;
const STALE_CHECK_MS = 2_000;
/**
 * Past their time, dispatches go on until CHAOS_MIN_TASKS were dispatched and faults until every class
 * has come once, however long that takes; each gives up only after this long without progress (no batch
 * accepted by any replica; no fault could be dealt).
 */
const STALL_MS = 60_000;
const MIN_TASKS = Number(process.env.CHAOS_MIN_TASKS ?? 0);

if (!Number.isFinite(SECONDS) || SECONDS < 10) {
  console.error("CHAOS_SECONDS must be a number of seconds, at least 10");
  process.exit(2);
}

let cluster: Cluster | null = null;

async function main(): Promise<number> {
  const c = new Cluster(STALE_CHECK_MS);
  cluster = c;
  let traffic: Traffic | null = null;
  let keySampler: KeySampler | null = null;
  try {
    await c.start();
    const { replicas, workers } = c;
    say(`${replicas.length} replicas, ${workers.length} workers; running for ${SECONDS} s`);
    const faults = new Faults({
      replicas,
      workers,
      workerNames: c.workerNames,
      workerProxies: c.workerProxies,
      dbProxy: c.dbProxy,
      admin: c.admin,
      restart: (p) => c.restart(p),
      restartPostgres: () => c.restartPostgres(),
      replicaApp: (i) => c.replicaApp(i),
    });
    noteClockSkew(c, faults);

    keySampler = new KeySampler(c.admin);
    const t = new Traffic(c.replicaUrls);
    traffic = t;
    let failure: string | null = null;
    const fail = (err: unknown) => {
      failure ??= err instanceof Error ? (err.stack ?? err.message) : String(err);
    };
    const runStart = performance.now();
    const [dispatchUntil, endAt] = [runStart + SECONDS * 1000 * DISPATCH_SHARE, runStart + SECONDS * 1000];
    let dispatchDone = false;
    const dispatching = t
      .dispatch(dispatchUntil, MIN_TASKS, STALL_MS, () => failure !== null)
      .catch(fail)
      .finally(() => (dispatchDone = true));
    const interrupting = t.interrupt().catch(fail);
    const retrying = t.retry().catch(fail);
    const crashes: string[] = [];
    let faulting = true;
    const watching = watchCrashes(c, crashes, () => faulting, fail);
    // Faults go on until the end of the run, and as long as dispatching goes on past its time.
    const faultsUntil = () => performance.now() < endAt || !dispatchDone;
    const dealing = faults.run(faultsUntil, STALL_MS, runStart + SECONDS * 500).catch(fail);
    await dispatching;
    say(`dispatched ${t.dispatched.size} tasks; faults go on until the end`);
    await dealing;
    faulting = false;
    t.stop();
    await Promise.all([interrupting, retrying, watching]);
    if (failure) throw new Error(failure);
    await Promise.all(c.procs.map((p) => c.restart(p)));

    await settle(c);

    const report = await verify(c.admin, t.dispatched);
    const keys = await keysVerify(c.admin, keySampler);
    const runs = await verifyRuns(c.admin, {
      faults: faults.log,
      lives: c.procs.flatMap((p) => p.lives),
      staleCheckMs: STALE_CHECK_MS,
      replicaOf: new Map(c.workerNames.map((w) => [w, c.replicaOf(w)])),
    });
    const figures = figuresOf({ seconds: SECONDS, cluster: c, faults, tasks: t.dispatched.size, crashes, report, runs });
    printReport(figures, STALE_CHECK_MS);
    for (const problem of keys.problems.slice(0, 20)) say(`problem: ${problem}`);
    say(keysLine(keys));
    if (process.env.CHAOS_DUMP) await chaosTablesDump(c.admin, process.env.CHAOS_DUMP);
    if (process.env.CHAOS_JSON) {
      await writeFile(process.env.CHAOS_JSON, `${JSON.stringify({ ...figures, problems: figures.problems.slice(0, 500) }, null, 2)}\n`);
    }
    const f = figures;
    console.log(
      `chaos: ${f.tasks} tasks, ${f.kills} kills, ${f.lost} lost, ${f.duplicate} duplicate, ${f.stuck} stuck, ` +
        `${f.runsAfterFinal} runs after final, ${f.runsOnTakenBackLeases} runs on taken-back leases`,
    );
    const counts = [f.lost, f.duplicate, f.stuck, f.runsAfterFinal, f.runsOnTakenBackLeases, keys.overKeyLimit, keys.overRateLimit];
    if (t.stalled) say(`problem: ${t.stalled}`);
    return counts.every((n) => n === 0) && f.crashes === 0 && !t.stalled ? 0 : 1;
  } finally {
    traffic?.close();
    await keySampler?.stop();
    await c.close();
    cluster = null;
  }
}

/** The skewed replicas' clocks, as faults of their own (they last the whole run). */
function noteClockSkew(c: Cluster, faults: Faults): void {
  for (const [i, r] of c.replicas.entries()) {
    if (CLOCK_OFFSET_S[i] === 0) continue;
    const line = `${r.name}'s clock is ${CLOCK_OFFSET_S[i] > 0 ? "+" : ""}${CLOCK_OFFSET_S[i]} s off (libfaketime); its Date header says ${c.measuredSkew.get(r.name)![0]} s`;
    faults.note("clock-skew", r.name, line);
    say(`fault clock-skew: ${line}`);
  }
}

/** Waits until no task is active any more, or SETTLE_TIMEOUT_MS. */
async function settle(c: Cluster): Promise<void> {
  say("settling: waiting for every task to reach a final status");
  const deadline = performance.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const { rows } = await c.admin.query<{ n: number }>("select count(*)::int4 as n from taskq.tasks");
    if (rows[0].n === 0 || performance.now() > deadline) return;
    await sleep(250);
  }
}

/** A process that exits by itself is a crash: counted, reported, and started again (while `on()`). */
async function watchCrashes(c: Cluster, crashes: string[], on: () => boolean, fail: (err: unknown) => void): Promise<void> {
  const seen = new Set<string>();
  while (on()) {
    for (const p of c.procs) {
      const crash = p.crashed;
      if (!crash || seen.has(crash)) continue;
      seen.add(crash);
      crashes.push(crash);
      say(`problem: ${crash.split("\n")[0]}; starting it again`);
      c.restart(p).catch(fail);
    }
    await sleep(200);
  }
}

// However the run ends, no process outlives it; an interrupted run also stops Postgres and removes its folder.
process.on("exit", killEverything);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killEverything();
    void (cluster?.close() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    console.log("chaos: run failed before its checks (see above)");
    process.exit(1);
  },
);
