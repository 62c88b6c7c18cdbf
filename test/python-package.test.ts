/**
 * The Python SDK as a user installs it: `pip install ./python` into a fresh virtualenv, then the
 * examples copied to a folder outside the repository, run by that virtualenv's python against a real
 * server. The virtualenv sees the system's packages (Debian's grpcio and protobuf, which it depends on);
 * pip runs offline (`--no-index --no-build-isolation`: this machine has no Python package index, so the
 * build uses Debian's setuptools), which only changes where the build's tools come from.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFile, rm } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { Harness } from "./helpers.js";
import { REPO, assertRan, run, tempDir, userEnv } from "./outside-project.js";

const python = process.env.TASKQ_PYTHON ?? "/usr/bin/python3";

let h: Harness;
let dir: string;
before(async () => {
  h = await Harness.create();
  await h.replica();
  dir = await tempDir("pip");
});
after(async () => {
  await h.close();
  await rm(dir, { recursive: true, force: true });
});

test("pip install ./python into a fresh virtualenv: the examples run from outside the repository", { timeout: 180_000 }, async () => {
  const venv = path.join(dir, "venv");
  const bin = (name: string) => path.join(venv, "bin", name);
  const env = userEnv({ TASKQ_URL: h.replicas[0].server.url, PYTHONDONTWRITEBYTECODE: "1" });
  delete env.PYTHONPATH;
  assertRan("python -m venv", await run(python, ["-m", "venv", "--system-site-packages", venv], { cwd: dir, env, timeoutMs: 60_000 }));
  const installed = assertRan(
    "pip install ./python",
    await run(bin("pip"), ["install", "--no-index", "--no-build-isolation", path.join(REPO, "python")], { cwd: dir, env, timeoutMs: 120_000 }),
  );
  assert.match(installed.stdout, /Successfully installed taskq-\d+\.\d+\.\d+/);

  // The package came from the install, with its typing marker and generated code, not from the repository.
  const where = assertRan(
    "import taskq",
    await run(bin("python"), ["-c", "import pathlib, taskq; p = pathlib.Path(taskq.__file__).parent; print(p); print((p / 'py.typed').exists(), (p / '_gen' / 'worker_pb2.py').exists())"], { cwd: dir, env, timeoutMs: 30_000 }),
  );
  const [pkgDir, markers] = where.stdout.trim().split("\n");
  assert.ok(pkgDir.startsWith(venv), `taskq imported from ${pkgDir}`);
  assert.equal(markers, "True True");

  for (const file of ["worker.py", "client.py"]) await copyFile(path.join(REPO, "examples", "python", file), path.join(dir, file));
  const worker = spawn(bin("python"), ["worker.py"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  let workerOut = "";
  worker.stdout.on("data", (d) => (workerOut += d));
  worker.stderr.on("data", (d) => (workerOut += d));
  const exited = new Promise<number | null>((resolve) => worker.on("exit", (code) => resolve(code)));
  try {
    const client = await run(bin("python"), ["client.py"], { cwd: dir, env, timeoutMs: 120_000 });
    assert.equal(client.code, 0, `client.py failed:\n${client.stdout}\n${client.stderr}\nworker:\n${workerOut}`);
    assert.match(client.stdout, /^result of task \d+: \{"pages": 16, "sections": 4\}$/m);
    assert.match(client.stdout, /^result of task \d+: \{"attempt": 3, "fetched": true\} after 3 attempts$/m);
  } finally {
    worker.kill("SIGTERM");
  }
  assert.equal(await exited, 0, `worker.py did not stop cleanly:\n${workerOut}`);
  assert.match(workerOut, /^\[worker\] stopped$/m);
});
