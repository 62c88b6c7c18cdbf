/**
 * The conformance harness (scripts/conformance.ts) against each SDK's conformance worker: every case
 * passes with the TypeScript SDK's (test/conformance/ts-worker.ts) and the Python SDK's
 * (python/conformance_worker.py, run by TASKQ_PYTHON, default /usr/bin/python3, as test/python.test.ts
 * does). And against the TypeScript worker with its echo broken, the harness fails that case and only
 * that one, so a green run means something.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";

/** Every case of the harness, in the order it runs them: a case dropped or renamed fails here. */
const CASES = [
  "echo",
  "log",
  "progress",
  "fail",
  "retry",
  "sleep_interrupt",
  "ignore_cancel",
  "timeout",
  "large_result",
  "large_result_over_limit",
  "context",
  "many_tasks",
  "parallel",
  "stream_cut",
  "server_restart",
  "worker_stop",
];

const TSX = [process.execPath, "--conditions=@taskq/source", "--import", "tsx"];
const TS_WORKER = [...TSX, "test/conformance/ts-worker.ts"];
const PYTHON_WORKER = [process.env.TASKQ_PYTHON ?? "/usr/bin/python3", "python/conformance_worker.py"];
/** A whole run takes about 25 s (the stream cut and the server restart wait seconds each); a busy machine may take a few times that. */
const RUN_MS = 240_000;
/** How long the harness may take to stop the server and worker it started (each gets 30 s, then SIGKILL). */
const TEARDOWN_MS = 70_000;
const TEST_MS = RUN_MS + TEARDOWN_MS + 10_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the harness to its end and returns what it printed. Past RUN_MS it gets SIGTERM, on which it
 * fails the running case and stops what it started; SIGKILL only if that hangs too.
 */
function harness(args: string[], worker: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const database = process.env.TASKQ_TEST_DATABASE_URL ? ["--database-url", process.env.TASKQ_TEST_DATABASE_URL] : [];
  const child = spawn(TSX[0], [...TSX.slice(1), "scripts/conformance.ts", ...database, ...args, "--", ...worker], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const timers = [setTimeout(() => child.kill("SIGTERM"), RUN_MS), setTimeout(() => child.kill("SIGKILL"), RUN_MS + TEARDOWN_MS)];
  return new Promise((resolve) =>
    child.on("exit", (code) => {
      for (const t of timers) clearTimeout(t);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** The case lines of a run: "ok <case>" or "FAIL <case>: why", durations left out. */
const caseLines = (stdout: string) =>
  stdout
    .split("\n")
    .filter((l) => /^(ok|FAIL) /.test(l))
    .map((l) => l.replace(/ \(\d+\.\d s\)$/, ""));

/** Asserts that every case passed, in order, and the harness exited 0. */
function assertAllPassed(run: Run): void {
  const report = `${run.stdout}\n${run.stderr}`;
  assert.deepEqual(caseLines(run.stdout), CASES.map((c) => `ok ${c}`), report);
  assert.match(run.stdout, new RegExp(`^${CASES.length} passed, 0 failed$`, "m"), report);
  assert.equal(run.code, 0, report);
}

test("every conformance case passes with the TypeScript SDK's worker", { timeout: TEST_MS }, async () => {
  assertAllPassed(await harness([], TS_WORKER));
});

test("every conformance case passes with the Python SDK's worker", { timeout: TEST_MS }, async () => {
  assertAllPassed(await harness([], PYTHON_WORKER, { PYTHONDONTWRITEBYTECODE: "1" }));
});

test("the harness fails a worker whose echo changes the params, and only that case", { timeout: TEST_MS }, async () => {
  const run = await harness(["--cases", "echo,log"], TS_WORKER, { CONFORMANCE_BREAK: "echo" });
  const report = `${run.stdout}\n${run.stderr}`;
  const lines = caseLines(run.stdout);
  assert.equal(lines.length, 2, report);
  assert.match(lines[0], /^FAIL echo: result\.broken: got true, want undefined$/, report);
  assert.equal(lines[1], "ok log", report);
  assert.match(run.stdout, /^1 passed, 1 failed$/m, report);
  assert.equal(run.code, 1, report);
});
