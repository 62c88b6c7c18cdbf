/**
 * The operator CLI against a live server, as a person or a script would run it: every command, its
 * table or --json output, and its exit code; and immediate mode with no server at all. Most tests run
 * the CLI's TypeScript source under tsx; those about loading (a TypeScript module without tsx) run the
 * built CLI, as a user does, and need `npm run build` first.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, test } from "node:test";
import { DEFAULT_URL, RetryableError } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
let url: string;
let replicaId: string;
before(async () => {
  h = await Harness.create();
  const replica = await h.replica({
    queues: { video: { maxWorkers: 2, maxRunningPerKey: 1, rateLimitPerKey: { tasks: 3, perMs: 1_000, burst: 1 } } },
    schedules: [{ name: "nightly", cron: "0 3 * * *", timeZone: "Europe/Berlin", type: "cli.job" }],
    // Short liveness timings: the replica heartbeats its worker sessions (what `workers` shows) every 160 ms.
    staleCheckMs: 2_000,
  });
  url = replica.server.url;
  replicaId = replica.engine.replicaId;
});
after(() => h.close());

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function node(args: string[], opts: { cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env: { ...process.env, TASKQ_URL: url }, cwd: opts.cwd }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** The CLI from its source, under tsx; `imports` are more modules to load first (--import). */
const taskq = (...args: string[]) => taskqWith([], ...args);
const taskqWith = (imports: string[], ...args: string[]) =>
  node(["--conditions=@taskq/source", "--import", "tsx", ...imports.flatMap((i) => ["--import", i]), "packages/cli/src/main.ts", ...args]);

const CLI = path.resolve("packages/cli");

/** The built CLI, as installed: plain JavaScript, no loader. Refuses to run one older than its source. */
function builtTaskq(args: string[], opts: { cwd?: string } = {}): Promise<Run> {
  for (const file of ["main", "immediate", "commands", "args"]) {
    const built = statSync(path.join(CLI, "dist", `${file}.js`), { throwIfNoEntry: false });
    const source = statSync(path.join(CLI, "src", `${file}.ts`));
    assert.ok(built && built.mtimeMs >= source.mtimeMs, `packages/cli/dist/${file}.js is missing or older than its source: run npm run build first`);
  }
  return node([path.join(CLI, "bin", "taskq.js"), ...args], opts);
}

/** A length of time as the CLI prints one: "850ms", "12.3s", "4m05s", "2h03m". */
const DURATION = String.raw`\d+(?:ms|\.\ds|m\d\ds|h\d\dm)`;

/** A directory of its own for files a test writes, removed after the test. */
async function scratch(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "taskq-cli-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("dispatch, status and active: human output, --json, and the idempotency and concurrency keys", async () => {
  const queued = await taskq("dispatch", "cli.job", "-p", "n=2", "-p", "who=ann", "--priority", "12", "--concurrency-key", "tenant-3");
  assert.equal(queued.code, 0, queued.stderr);
  const id = /^task (\d+) queued$/m.exec(queued.stdout)![1];

  const again = await taskq("dispatch", "cli.job", "--idempotency-key", "k1", "--json");
  const repeat = await taskq("dispatch", "cli.job", "--idempotency-key", "k1", "--json");
  assert.equal(JSON.parse(again.stdout).created, true);
  assert.deepEqual(JSON.parse(repeat.stdout), { taskId: JSON.parse(again.stdout).taskId, created: false });

  const status = await taskq("status", id);
  assert.equal(status.code, 0);
  assert.match(status.stdout, /^status\s+Pending$/m);
  assert.match(status.stdout, /^title\s+Cli job$/m);
  assert.match(status.stdout, /^priority\s+12 \(High\)$/m);
  assert.match(status.stdout, /^concurrency key\s+tenant-3$/m);
  assert.doesNotMatch((await taskq("status", JSON.parse(again.stdout).taskId)).stdout, /^concurrency key/m);
  const asJson = JSON.parse((await taskq("status", id, "--json")).stdout);
  assert.deepEqual(asJson.params, { n: 2, who: "ann" }, "-p values are JSON when they parse, else strings");

  const activeTable = (await taskq("active", "--sort", "priority", "--desc")).stdout.split("\n");
  assert.match(activeTable[0], /^ORIGIN\s+ID\s+STATUS\s+TITLE\s+CREATED\s+STARTED\s+ATTEMPTS\s+PRIORITY\s+TYPE$/);
  assert.match(activeTable[1], new RegExp(`^User\\s+${id}\\s+Pending\\s+Untitled\\s+\\S+ \\S+\\s+-\\s+0\\s+12 \\(High\\)\\s+cli\\.job$`));
  const activeJson = JSON.parse((await taskq("active", "--json", "--status", "pending")).stdout);
  assert.equal(activeJson.tasks.length, 2);

  await h.client().interrupt(id);
  await h.client().interrupt(JSON.parse(again.stdout).taskId);
});

test("watch prints the log live and exits 0 when the task completes, 1 when it does not", async () => {
  const worker = h.worker();
  worker.register("cli.job", (ctx) => {
    ctx.log(`working on ${ctx.params.n}`);
    ctx.progress(100);
    if (ctx.params.fail) throw new Error("it broke");
    return { done: ctx.params.n };
  });
  await worker.start();
  const ok = await taskq("dispatch", "cli.job", "-p", "n=5", "--watch");
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /\[log #1 [\d: -]+\] working on 5/);
  assert.match(ok.stdout, /\[progress\] 100/);
  assert.match(ok.stdout, /^completed: \{"done":5\}$/m);

  const failed = await taskq("dispatch", "cli.job", "-p", "fail=true", "--json");
  const watched = await taskq("watch", JSON.parse(failed.stdout).taskId);
  assert.equal(watched.code, 1);
  assert.match(watched.stdout, /^failed: it broke$/m);
  await worker.stop();
});

test("interrupt, history, queues (with pause and resume) and schedules", async () => {
  const queued = await taskq("dispatch", "never.runs", "--queue", "video", "--title", "Render", "--json");
  const id = JSON.parse(queued.stdout).taskId;
  const paused = await taskq("queues", "pause", "video");
  assert.match(paused.stdout, /^queue video paused \(1 pending, 0 running\)$/m);
  const list = (await taskq("queues")).stdout;
  assert.match(list, /^QUEUE\s+MAX WORKERS\s+PENDING\s+OLDEST WAIT\s+RUNNING\s+PAUSED\s+PER KEY\s+RATE\s+KEYS\s+HELD$/m);
  assert.match(list, new RegExp(`^video\\s+2\\s+1\\s+${DURATION}\\s+0\\s+yes\\s+1\\s+3/1\\.0s per key\\s+0\\s+-$`, "m"), "its task has waited since it was queued");
  assert.match(list, /^scheduled\s+1\s+/m);
  assert.match(list, /^default\s+-\s+0\s+-\s+0\s+no\s+-\s+-\s+0\s+-$/m, "nothing waits: no oldest wait");
  const video = JSON.parse((await taskq("queues", "--json")).stdout).queues.find((q: { name: string }) => q.name === "video");
  assert.ok(video.oldestDueMs > 0, `oldestDueMs ${video.oldestDueMs}`);
  assert.equal(JSON.parse((await taskq("queues", "resume", "video", "--json")).stdout).paused, false);

  assert.match((await taskq("interrupt", id, "--reason", "not needed")).stdout, new RegExp(`^task ${id} canceled$`, "m"));
  const twice = await taskq("interrupt", id);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /FailedPrecondition: task \d+ already finished as canceled/);

  const historyTable = (await taskq("history", "--origin", "user", "--status", "canceled")).stdout.split("\n");
  assert.match(historyTable[0], /^STATUS\s+CREATED\s+TITLE\s+INITIATOR\s+ID$/);
  assert.match(historyTable[1], new RegExp(`^Canceled\\s+\\S+ \\S+\\s+Render\\s+API\\s+${id}$`));

  const schedules = (await taskq("schedules")).stdout;
  assert.match(schedules, /^nightly\s+0 3 \* \* \*\s+Europe\/Berlin\s+cli\.job\s+scheduled\s+\S+ \S+\s+-\s+-\s+config$/m);
});

test("status: why a pending task waits, and every attempt with its outcome, worker, duration and error", async () => {
  const orphan = JSON.parse((await taskq("dispatch", "nobody.runs", "--json")).stdout).taskId;
  const pending = await taskq("status", orphan);
  assert.equal(pending.code, 0, pending.stderr);
  assert.match(pending.stdout, /^waiting\s+No worker: no connected worker runs type "nobody\.runs" from queue "default"$/m);
  assert.doesNotMatch(pending.stdout, /^attempt history:$/m, "never leased: no attempts");
  assert.deepEqual(JSON.parse((await taskq("status", orphan, "--json")).stdout).waiting, {
    reason: "no_worker",
    detail: 'no connected worker runs type "nobody.runs" from queue "default"',
  });
  await h.client().interrupt(orphan);

  const worker = h.worker({ name: "cli-flaky" });
  worker.register("cli.flaky", (ctx) => {
    if (ctx.attempt === 1) throw new RetryableError("first try fails", { delayMs: 0 });
    return "ok";
  });
  await worker.start();
  const handle = await h.client().dispatch("cli.flaky", {}, { maxAttempts: 2 });
  assert.equal(await handle.result(), "ok");
  await worker.stop();

  const done = (await taskq("status", handle.id)).stdout;
  assert.doesNotMatch(done, /^waiting/m, "a finished task waits for nothing");
  const attempts = done.slice(done.indexOf("attempt history:\n")).trimEnd().split("\n");
  assert.equal(attempts.length, 4, done);
  assert.match(attempts[1], /^ {2}#\s+STARTED\s+OUTCOME\s+WORKER\s+DURATION\s+ERROR$/);
  assert.match(attempts[2], new RegExp(`^  1\\s+\\S+ \\S+\\s+Failed\\s+cli-flaky\\s+${DURATION}\\s+first try fails$`));
  assert.match(attempts[3], new RegExp(`^  2\\s+\\S+ \\S+\\s+Succeeded\\s+cli-flaky\\s+${DURATION}$`));
  const asJson = JSON.parse((await taskq("status", handle.id, "--json")).stdout);
  assert.equal(asJson.waiting, null);
  assert.deepEqual(
    asJson.attemptHistory.map((a: { number: number; outcome: string; worker: string; error: string }) => [a.number, a.outcome, a.worker, a.error]),
    [
      [1, "failed", "cli-flaky", "first try fails"],
      [2, "succeeded", "cli-flaky", ""],
    ],
  );
});

test("workers: one line per connected worker with its replica, task types, queues, load, credits and last message; --json", async () => {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const worker = h.worker({ name: "cli-worker", concurrency: 3, queues: ["default", "video"] });
  worker.register("cli.hold", () => released.then(() => "done"));
  await worker.start();
  const handle = await h.client().dispatch("cli.hold", {});
  // Credits and the last message are written by the replica's next heartbeat of the session.
  // Workers of earlier tests may still be leaving: wait for the server's own and this one alone.
  const info = await waitFor("the worker running its task, as a heartbeat recorded it", async () => {
    const ws = await h.client().listWorkers();
    const w = ws.find((x) => x.name === "cli-worker");
    return ws.length === 2 && w && w.running === 1 && w.credits === 2 && w.lastHeardAt ? w : null;
  });

  const text = await taskq("workers");
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.trimEnd().split("\n");
  assert.match(lines[0], /^WORKER\s+REPLICA\s+TASK TYPES\s+QUEUES\s+RUNNING\s+CREDITS\s+LAST HEARD$/);
  const types = info.taskTypes.join(", ").replace(/\./g, "\\.");
  assert.ok(info.taskTypes.includes("cli.hold"));
  assert.match(text.stdout, new RegExp(`^cli-worker\\s+${replicaId}\\s+${types}\\s+default, video\\s+1/3\\s+2\\s+\\d+s ago$`, "m"));
  // The server's own maintenance worker is connected too, to every queue.
  assert.match(text.stdout, new RegExp(`^taskq-server\\s+${replicaId}\\s+.+\\s+all\\s+0/1\\s+\\d+\\s+(?:\\d+s ago|-)$`, "m"));
  assert.equal(lines.length, 3, text.stdout);

  const listed = JSON.parse((await taskq("workers", "--json")).stdout) as Record<string, unknown>[];
  const mine = listed.find((w) => w.name === "cli-worker");
  assert.deepEqual(
    mine && { sessionId: mine.sessionId, replicaId: mine.replicaId, queues: mine.queues, concurrency: mine.concurrency, runningTaskIds: mine.runningTaskIds },
    { sessionId: info.sessionId, replicaId, queues: ["default", "video"], concurrency: 3, runningTaskIds: [handle.id] },
  );
  assert.equal(typeof mine?.lastHeardAt, "string");

  assert.equal((await taskq("workers", "extra")).code, 2);
  release();
  assert.equal(await handle.result(), "done");
  await worker.stop();
});

test("usage errors exit 2, server errors exit 1", async () => {
  const unknown = await taskq("frobnicate");
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const badFlag = await taskq("active", "--colour", "red");
  assert.equal(badFlag.code, 2);
  const notFound = await taskq("status", "987654321");
  assert.equal(notFound.code, 1);
  assert.match(notFound.stderr, /NotFound: task 987654321 not found/);
  const badQueue = await taskq("dispatch", "x", "--queue", "nope");
  assert.equal(badQueue.code, 1);
  assert.match(badQueue.stderr, /InvalidArgument: queue: queue "nope" is not defined/);
});

test("run: immediate mode runs a handler of a worker module with --key=value params and no server", async () => {
  const ran = await taskq("run", "examples/handlers.ts", "report.generate", "--sections=2", "--name=Q3");
  assert.equal(ran.code, 0, ran.stderr);
  assert.deepEqual(ran.stdout.trim().split("\n"), [
    '[log] Generating report "Q3" with 2 sections',
    "[log] Section 1/2 written",
    "[status] progress = 50",
    "[log] Section 2/2 written",
    "[status] progress = 100",
    "[log] Report complete",
    'result: {"sections":2,"pages":8}',
  ]);
  const scripted = await taskq("run", "examples/handlers.ts", "report.generate", "--sections=1", "--json");
  assert.deepEqual(JSON.parse(scripted.stdout), { result: { sections: 1, pages: 4 } });
  assert.match(scripted.stderr, /\[log\] Report complete/);
  const failing = await taskq("run", "examples/handlers.ts", "flaky.fetch");
  assert.equal(failing.code, 1);
  assert.match(failing.stderr, /failed: upstream timed out on attempt 1/);
  const missing = await taskq("run", "examples/handlers.ts", "no.such.type");
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no handler registered for task type no\.such\.type/);
});

test("--help and usage errors load neither the SDK nor connect nor protobuf", async (t) => {
  // A resolve hook that refuses them: a CLI that imported any of them would fail here.
  const dir = await scratch(t);
  const hooks = path.join(dir, "hooks.mjs");
  await writeFile(
    hooks,
    'export async function resolve(specifier, context, next) {\n' +
      '  if (/^@(taskq\\/sdk|connectrpc\\/|bufbuild\\/)/.test(specifier)) throw new Error("refused to load " + specifier);\n' +
      "  return next(specifier, context);\n}\n",
  );
  const refuse = path.join(dir, "refuse.mjs");
  await writeFile(refuse, `import { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
  const refusing = [pathToFileURL(refuse).href];

  const help = await taskqWith(refusing, "--help");
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^taskq: operate a taskq server/);
  assert.ok(help.stdout.includes(`default ${DEFAULT_URL};`), "the usage names the SDK's DEFAULT_URL");
  const unknown = await taskqWith(refusing, "frobnicate");
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  // The control: a command that talks to a server does load the SDK, and the hook stops it.
  const status = await taskqWith(refusing, "status", "1");
  assert.notEqual(status.code, 0);
  assert.match(status.stderr, /refused to load @taskq\/sdk/);
});

test("run: the built CLI runs a TypeScript module with tsx from its project, and without tsx says how to run it", async (t) => {
  const ran = await builtTaskq(["run", "examples/handlers.ts", "report.generate", "--sections=1", "--json"]);
  assert.equal(ran.code, 0, ran.stderr);
  assert.deepEqual(JSON.parse(ran.stdout), { result: { sections: 1, pages: 4 } });

  // A module outside any project with tsx, run from there: no loader to be had.
  const dir = await scratch(t);
  await writeFile(path.join(dir, "handlers.ts"), "export const answer: number = 42;\n");
  const refused = await builtTaskq(["run", "handlers.ts", "any.type"], { cwd: dir });
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /^taskq: run: handlers\.ts is TypeScript, and tsx is not installed in its project or in .+: compile the module to JavaScript and run the \.js file, or install tsx there/);

  // The same handlers as JavaScript need no loader; the Worker is found among the exports by its shape.
  await writeFile(
    path.join(dir, "handlers.mjs"),
    `import { Worker } from ${JSON.stringify(pathToFileURL(path.resolve("packages/sdk/dist/index.js")).href)};\n` +
      "export const worker = new Worker({}).register('add', (ctx) => ctx.params.a + ctx.params.b);\n",
  );
  const js = await builtTaskq(["run", "handlers.mjs", "add", "--a=2", "--b=3"], { cwd: dir });
  assert.equal(js.code, 0, js.stderr);
  assert.equal(js.stdout, "result: 5\n");
});
