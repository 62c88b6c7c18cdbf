/**
 * The conformance harness: checks a worker built on any taskq SDK, in any language, against the
 * server, through the same fixed list of cases (scripts/conformance-cases.ts).
 *
 *   node --conditions=@taskq/source --import tsx scripts/conformance.ts [--database-url URL] [--cases a,b] [--log-dir DIR] -- <worker command...>
 *
 * It starts a taskq server on a free port, with auth on and short liveness timings
 * (scripts/conformance-env.ts), on a database it creates on URL (else TASKQ_TEST_DATABASE_URL, else
 * DATABASE_URL, else an embedded Postgres in a temporary folder); starts the worker command with
 * TASKQ_URL pointing at a TCP proxy in front of the server and TASKQ_TOKEN a worker token; waits for
 * it to print `conformance worker ready`; runs the cases through the TypeScript SDK's TaskClient; prints
 * `ok <case>` or `FAIL <case>: <why>` per case and `N passed, N failed`; stops everything it started,
 * drops the database, and exits 0 only when every case passed (1 when one failed, 2 on bad usage or
 * when it could not set up). `--cases` runs only the cases named; `--log-dir` keeps the whole output of
 * the server and the worker there (server.log, worker.log), where a failed run prints only their last lines.
 *
 * The worker under test: it connects to TASKQ_URL (http://host:port; a gRPC library takes host:port)
 * with `authorization: Bearer $TASKQ_TOKEN`, declares exactly these task types, prints
 * `conformance worker ready` once welcomed (or once started, if it cannot tell), and on SIGTERM stops
 * gracefully (running tasks finish) and exits 0. Params and results are JSON objects.
 *
 *   conformance.echo            any object        returns the params unchanged
 *   conformance.log             {steps: N}        logs "step 1" … "step N" in order, returns {logged: N}
 *   conformance.progress        {values: [...]}   sets progress to each value in order, then status value
 *                                                 "phase" to "done"; returns {}
 *   conformance.fail            {message: S}      fails the task (not retryable) with error message S
 *   conformance.retry           {times: K,        while its attempt number ≤ K, raises a retryable error
 *                                delay_ms: D}     "retry K" with delay D ms; then returns {attempt: attempt}
 *   conformance.sleep           {ms: M}           sleeps M ms, waking early when the task is cancelled
 *                                                 (interrupt, timeout, shutdown, lost stream), and then
 *                                                 stops with the SDK's abort error; else returns {slept: M}
 *   conformance.ignore_cancel   {ms: M}           sleeps M ms ignoring cancellation, returns {done: true}
 *   conformance.timeout         {}                declared in the hello with a timeout of 300 ms; sleeps
 *                                                 60 s waking on cancel
 *   conformance.large_result    {bytes: N}        returns {data: "x" repeated N times}; over the 1 MiB
 *                                                 result limit the SDK fails the attempt as retryable
 *                                                 instead of sending it
 *   conformance.context         {}                returns {attempt, max_attempts, idempotency_key, type,
 *                                                 queue, id} of the task
 *
 * It must run at least two tasks at once (the `parallel` case). Every wait has a deadline; time is
 * checked from below only, so a slow machine makes a run slower, not red.
 */
import { setMaxListeners } from "node:events";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { TaskClient } from "@taskq/sdk";
import { CASES, type Case, type HarnessEnv } from "./conformance-cases.js";
import { cleanEnv, openDatabase, Proc, startServer, workFolder, writeServerConfig, type Database } from "./conformance-env.js";
import { freePort } from "./free-port.js";
import { TcpProxy } from "./tcp-proxy.js";

const USAGE = "usage: conformance.ts [--database-url URL] [--cases name,name] [--log-dir DIR] -- <worker command...>";
/** The longest a case may take; the slowest (a stream cut, a server restart) need seconds. */
const CASE_MS = 60_000;
/** How long the worker may take to say it is ready (a Python interpreter importing grpc, tsx compiling). */
const READY_MS = 60_000;

interface Args {
  databaseUrl: string | null;
  logDir: string | null;
  cases: Case[];
  worker: string[];
}

function parseArgs(argv: string[]): Args {
  const dash = argv.indexOf("--");
  const worker = dash >= 0 ? argv.slice(dash + 1) : [];
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  let databaseUrl = process.env.TASKQ_TEST_DATABASE_URL || process.env.DATABASE_URL || null;
  let cases = CASES;
  let logDir: string | null = null;
  for (let i = 0; i < own.length; i++) {
    const value = own[i + 1];
    if (own[i] === "--database-url" && value) databaseUrl = own[++i];
    else if (own[i] === "--log-dir" && value) logDir = path.resolve(own[++i]);
    else if (own[i] === "--cases" && value) {
      const names = own[++i].split(",");
      const unknown = names.filter((n) => !CASES.some((c) => c.name === n));
      if (unknown.length > 0) throw new Error(`unknown case(s) ${unknown.join(", ")}; the cases: ${CASES.map((c) => c.name).join(", ")}`);
      cases = CASES.filter((c) => names.includes(c.name));
    } else throw new Error(`unknown argument ${own[i]}`);
  }
  if (worker.length === 0) throw new Error("no worker command after --");
  return { databaseUrl, logDir, cases, worker };
}

/** Aborted when the harness itself is told to stop: the running case fails at once and no other starts. */
const interrupted = new AbortController();
// Every case's signal listens to it, and a case's signal to each of its waits (50 at once in many_tasks).
setMaxListeners(0, interrupted.signal);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => interrupted.abort(new Error(`the harness got ${signal}`)));
}

/** Runs one case under its deadline; resolves with why it failed, or null when it passed. */
async function runCase(c: Case, env: HarnessEnv, worker: Proc): Promise<string | null> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new Error(`deadline: the case took over ${CASE_MS} ms`)), CASE_MS);
  const workerGone = new AbortController();
  void worker.exited.then(({ code, signal }) => workerGone.abort(new Error(`the worker exited (code ${code}, signal ${signal})`)));
  env.signal = AbortSignal.any([deadline.signal, interrupted.signal, ...(c.stopsWorker ? [] : [workerGone.signal])]);
  setMaxListeners(0, env.signal);
  const running = c.run(env);
  try {
    await Promise.race([running, rejectOnAbort(env.signal)]);
    return null;
  } catch (err) {
    // The case's own error says what it was waiting for; its waits end with the signal, so it comes at once.
    const own = env.signal.aborted ? await Promise.race([running.then(() => null, (e: unknown) => e), delay(1_000).then(() => null)]) : null;
    const why = own ?? err;
    return (why instanceof Error ? why.message : String(why)).split("\n")[0];
  } finally {
    clearTimeout(timer);
    env.proxy.release(); // a case that failed while holding the worker's messages must not hold the next one's
  }
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
}

/** What a run has started, for tearDown; the server and the client are replaced when the server restarts. */
interface Started {
  db?: Database;
  server?: Proc;
  proxy?: TcpProxy;
  worker?: Proc;
  client?: TaskClient;
}

/** Starts the database, the server, the proxy and the worker under test; returns what the cases work with. */
async function setUp(args: Args, workDir: string, started: Started): Promise<HarnessEnv> {
  const db = await openDatabase(args.databaseUrl, workDir);
  started.db = db;
  const { file, tokens } = await writeServerConfig(workDir);
  if (args.logDir) await mkdir(args.logDir, { recursive: true });
  const logFile = (name: string) => (args.logDir ? path.join(args.logDir, name) : undefined);
  const settings = { port: await freePort(), databaseUrl: db.url, configFile: file, logFile: logFile("server.log") };
  const url = `http://127.0.0.1:${settings.port}`;
  started.server = await startServer(settings);
  const proxy = await TcpProxy.start({ port: settings.port });
  started.proxy = proxy;
  console.log(`# server ${url} (database ${new URL(db.url).pathname.slice(1)}); worker: ${args.worker.join(" ")}`);
  const workerEnv = cleanEnv({ TASKQ_URL: `http://127.0.0.1:${proxy.port}`, TASKQ_TOKEN: tokens.worker });
  const worker = new Proc("worker", args.worker, { env: workerEnv, logFile: logFile("worker.log") });
  started.worker = worker;
  const client = new TaskClient({ url, token: tokens.harness });
  started.client = client;
  const env: HarnessEnv = {
    client,
    signal: interrupted.signal,
    proxy,
    worker,
    async restartServer() {
      env.client.close();
      const { code } = await started.server!.stop("SIGTERM");
      started.server = await startServer(settings);
      env.client = new TaskClient({ url, token: tokens.harness });
      started.client = env.client;
      return code;
    },
  };
  return env;
}

/** Stops whatever setUp started, the worker first and the database last. */
async function tearDown(started: Started): Promise<void> {
  if (started.worker?.running) await started.worker.stop("SIGTERM", 10_000);
  started.client?.close();
  if (started.server?.running) await started.server.stop("SIGTERM");
  await started.proxy?.close();
  await started.db?.close().catch((err) => console.error(`conformance: could not drop the database: ${(err as Error).message}`));
}

/** Waits for the worker to be ready, then runs the cases one after another, printing a line for each. */
async function runCases(cases: Case[], env: HarnessEnv): Promise<{ passed: number; failures: string[] }> {
  const ready = await env.worker.waitForLine(/^conformance worker ready\s*$/, READY_MS).then(() => null, (err: Error) => err.message);
  if (ready) {
    console.log(`FAIL worker_ready: ${ready}`);
    return { passed: 0, failures: ["worker_ready"] };
  }
  let passed = 0;
  const failures: string[] = [];
  for (const c of cases) {
    if (interrupted.signal.aborted) break;
    const started = performance.now();
    const why = await runCase(c, env, env.worker);
    const took = `(${((performance.now() - started) / 1000).toFixed(1)} s)`;
    console.log(why === null ? `ok ${c.name} ${took}` : `FAIL ${c.name}: ${why} ${took}`);
    if (why === null) passed++;
    else failures.push(c.name);
  }
  return { passed, failures };
}

/** Sets up, runs the cases, tears down; returns the exit code. */
async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const work = await workFolder();
  const started: Started = {};
  let outcome: { passed: number; failures: string[] };
  try {
    outcome = await runCases(args.cases, await setUp(args, work.dir, started));
  } catch (err) {
    console.error(`conformance: could not set up: ${(err as Error).stack ?? err}`);
    return 2;
  } finally {
    await tearDown(started);
    await work.remove();
  }
  const { passed, failures } = outcome;
  console.log(`${passed} passed, ${failures.length} failed`);
  if (failures.length > 0) {
    console.error(`--- the worker's last output ---\n${started.worker?.tail() ?? ""}`);
    console.error(`--- the server's last output ---\n${started.server?.tail(20) ?? ""}`);
  }
  return failures.length === 0 && !interrupted.signal.aborted ? 0 : 1;
}

process.exit(await main());
