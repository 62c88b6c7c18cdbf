/**
 * `npm start` on a fresh machine: with no DATABASE_URL the server starts its embedded Postgres in a
 * local folder, serves on the configured port, answers health checks, and stops cleanly on SIGTERM.
 */
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "../sdk/gen/grpc/health/v1/health_pb.js";
import { TaskClient } from "../sdk/index.js";
import { connect } from "../sdk/transport.js";
import { freePort, startTs } from "./processes.js";

test("with no settings the server runs on an embedded Postgres kept in a local folder", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "taskq-start-"));
  await chmod(dir, 0o755); // as root, the embedded Postgres runs as an unprivileged user that must reach it
  const [port, pgPort] = [await freePort(), await freePort()];
  const server = startTs("server/main.ts", {
    DATABASE_URL: "",
    TASKQ_PORT: String(port),
    TASKQ_EMBEDDED_PORT: String(pgPort),
    TASKQ_DATA_DIR: path.join(dir, "pg"),
  });
  try {
    await server.waitFor(/using the embedded Postgres/, 60_000);
    await server.waitFor(new RegExp(`taskq listening on http://127\\.0\\.0\\.1:${port}`), 60_000);
    const url = `http://127.0.0.1:${port}`;
    const conn = connect({ url });
    const health = await createClient(Health, conn.transport).check({});
    assert.equal(health.status, HealthCheckResponse_ServingStatus.SERVING);
    conn.close();
    const client = new TaskClient({ url });
    const handle = await client.dispatch("hello");
    assert.equal((await handle.status()).status, "pending");
    client.close();
  } finally {
    server.proc.kill("SIGTERM");
    const code = await server.exited;
    await rm(dir, { recursive: true, force: true });
    assert.equal(code, 0, server.output());
  }
});
