/**
 * The Python SDK (python/): its pytest suite as one test of `npm test`. It starts the built server itself
 * (packages/server/dist, which `pretest` builds) on databases it creates on TASKQ_TEST_DATABASE_URL.
 * TASKQ_PYTHON picks the interpreter (default /usr/bin/python3, where Debian's grpcio and protobuf are).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";

const python = process.env.TASKQ_PYTHON ?? "/usr/bin/python3";

test("the Python SDK's tests pass (python/tests, pytest)", { timeout: 300_000 }, async () => {
  const child = spawn(python, ["-m", "pytest", "python/tests", "-q", "-p", "no:cacheprovider"], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  assert.equal(code, 0, "pytest failed: see its output above");
});
