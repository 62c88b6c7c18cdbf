/**
 * The chaos run, bounded: `npm run chaos` for CHAOS_TEST_SECONDS (default 45) seconds — three replicas
 * and four worker processes killed with SIGKILL at random and restarted, Postgres restarted once —
 * must end with thousands of tasks, no task lost, none duplicated, none stuck.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";

const SECONDS = Number(process.env.CHAOS_TEST_SECONDS ?? 45);

test(`chaos: ${SECONDS} s of kills and a Postgres restart lose nothing`, { timeout: (SECONDS + 240) * 1000 }, async () => {
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/chaos.ts"], {
    env: { ...process.env, CHAOS_SECONDS: String(SECONDS) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c));
  child.stderr.on("data", (c: Buffer) => (out += c));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  const last = out.trimEnd().split("\n").at(-1) ?? "";
  const m = /^chaos: (\d+) tasks, (\d+) kills, (\d+) lost, (\d+) duplicate, (\d+) stuck$/.exec(last);
  assert.ok(m, `the last line is not the summary:\n${out.slice(-4_000)}`);
  const [tasks, kills, lost, duplicate, stuck] = m.slice(1).map(Number);
  assert.deepEqual({ lost, duplicate, stuck }, { lost: 0, duplicate: 0, stuck: 0 }, out.slice(-4_000));
  assert.equal(code, 0);
  assert.ok(tasks >= 1_000, `only ${tasks} tasks`);
  assert.ok(kills >= 10, `only ${kills} kills`);
  assert.match(out, /Postgres back after \d+ ms/);
});
