/**
 * The chaos run, bounded: `npm run chaos` for CHAOS_TEST_SECONDS (default 45) seconds — three replicas
 * and four worker processes killed, paused and cut off (from Postgres, from each other) at random, a
 * worker killed during its replica's database outage, Postgres restarted once, two replicas' clocks five
 * minutes off — must end with no task lost, none duplicated, none stuck, no execution started after its
 * task ended or after its lease ended.
 *
 * What the run went through is a floor it waits for, never a rate: at least MIN_TASKS tasks and every
 * fault class at least once. A machine too slow or too busy to reach them in CHAOS_TEST_SECONDS makes
 * the run longer (dispatching and faults go on until they are reached), not the test fail. The run
 * gives up on them only when no replica accepted a batch for a minute (or no fault could be dealt),
 * which is a failure of the cluster, not of speed; the timeout below only bounds a run that hangs.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { FAULT_CLASSES, type FaultClass } from "../scripts/chaos-faults.js";

const SECONDS = Number(process.env.CHAOS_TEST_SECONDS ?? 45);
/** The run dispatches at least this many: past its time if it must (scripts/chaos.ts waits for them). */
const MIN_TASKS = 1_000;
/**
 * A bound for a run that hangs, not for a slow one: dispatching at 1 task/s, the run still ends well
 * within it (a 2-core machine does about 70/s idle, and 8/s with six busy loops beside the run).
 */
const TIMEOUT_MS = (SECONDS + 1_800) * 1000;
const KEYS_LINE = /keys: at most (\d+) tasks of one key running in (\d+) samples \(limit \d+, (\d+) over\); at most (\d+) starts of one key in \d+ ms \(limit \d+ \+ burst \d+, (\d+) windows over\)$/m;
const SUMMARY = /^chaos: (\d+) tasks, (\d+) kills, (\d+) lost, (\d+) duplicate, (\d+) stuck, (\d+) runs after final, (\d+) runs on taken-back leases$/;

test(`chaos: ${SECONDS} s of faults lose nothing and run nothing on a lease it no longer holds`, { timeout: TIMEOUT_MS }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "taskq-chaos-test-"));
  const json = path.join(dir, "chaos.json");
  const child = spawn(process.execPath, ["--conditions=@taskq/source", "--import", "tsx", "scripts/chaos.ts"], {
    env: { ...process.env, CHAOS_SECONDS: String(SECONDS), CHAOS_MIN_TASKS: String(MIN_TASKS), CHAOS_JSON: json },
    stdio: ["ignore", "pipe", "pipe"],
  });
  // If the test gives up (timeout), the run cleans up after itself on SIGTERM.
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await rm(dir, { recursive: true, force: true });
  });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c));
  child.stderr.on("data", (c: Buffer) => (out += c));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  const tail = out.slice(-6_000);
  const last = out.trimEnd().split("\n").at(-1) ?? "";
  const m = SUMMARY.exec(last);
  assert.ok(m, `the last line is not the summary:\n${tail}`);
  const [tasks, kills, lost, duplicate, stuck, afterFinal, takenBack] = m.slice(1).map(Number);
  const figures = JSON.parse(await readFile(json, "utf8")) as { faults: Record<FaultClass, number>; retries: number };

  const missing = FAULT_CLASSES.filter((c) => !(figures.faults[c] >= 1));
  assert.deepEqual(missing, [], `fault classes never dealt: ${missing.join(", ")}\n${tail}`);
  assert.ok(tasks >= MIN_TASKS, `only ${tasks} tasks: dispatching stalled (no replica accepted a batch for a minute)\n${tail}`);
  assert.ok(kills >= 2, `only ${kills} kills`);
  assert.ok(figures.retries >= 1, `no task was retried by the operator's Retry or RetryMany\n${tail}`);
  assert.deepEqual(
    { lost, duplicate, stuck, afterFinal, takenBack },
    { lost: 0, duplicate: 0, stuck: 0, afterFinal: 0, takenBack: 0 },
    tail,
  );
  // A quarter of the traffic was keyed, in a queue limiting each key's running tasks and starts.
  const keys = KEYS_LINE.exec(out);
  assert.ok(keys, `no keys line:\n${tail}`);
  const [mostRunning, samples, overKeyLimit, mostStarts, overRateLimit] = keys.slice(1).map(Number);
  assert.ok(samples > 0 && mostRunning >= 1 && mostStarts >= 1, `no keyed task ran: ${keys[0]}`);
  assert.deepEqual({ overKeyLimit, overRateLimit }, { overKeyLimit: 0, overRateLimit: 0 }, tail);
  assert.equal(code, 0, tail);
});
