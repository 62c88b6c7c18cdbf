/**
 * `npm test`: runs every test/*.test.ts with Node's test runner against a real Postgres.
 * TASKQ_TEST_DATABASE_URL names a server the tests may create databases on; without it, this starts
 * the same embedded Postgres that `npm start` uses (in a temporary folder) for the run. It fails when
 * there is no test file to run, so CI cannot pass by running nothing.
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { freePort } from "./free-port.js";
import { tmpdir } from "node:os";
import path from "node:path";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../packages/server/src/embedded.js";

const files = readdirSync("test")
  .filter((f) => f.endsWith(".test.ts"))
  .filter((f) => process.argv.length <= 2 || process.argv.slice(2).some((a) => f.includes(a)))
  .map((f) => path.join("test", f));
if (files.length === 0) {
  console.error("no test files found under test/");
  process.exit(1);
}

let embedded: EmbeddedDatabase | null = null;
let dataDir: string | null = null;
const env = { ...process.env };
if (!env.TASKQ_TEST_DATABASE_URL) {
  dataDir = await mkdtemp(path.join(tmpdir(), "taskq-test-pg-"));
  await chmod(dataDir, 0o755); // as root, the embedded Postgres runs as an unprivileged user that must reach it
  embedded = await startEmbeddedPostgres({ dataDir: path.join(dataDir, "data"), port: await freePort() });
  env.TASKQ_TEST_DATABASE_URL = embedded.url;
  console.log(`tests use an embedded Postgres in ${dataDir}`);
} else {
  console.log(`tests use TASKQ_TEST_DATABASE_URL (${new URL(env.TASKQ_TEST_DATABASE_URL).host})`);
}

const child = spawn(process.execPath, ["--conditions=@taskq/source", "--import", "tsx", "--test", "--test-concurrency=1", ...files], {
  stdio: "inherit",
  env,
});
const code: number = await new Promise((resolve) => child.on("exit", (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await embedded?.stop();
if (dataDir) await rm(dataDir, { recursive: true, force: true });
process.exit(code);
