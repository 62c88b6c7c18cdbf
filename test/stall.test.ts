/**
 * A stalled database link: one replica reaches Postgres through a TCP proxy that stops delivering bytes
 * (both ways, or one) without closing anything. Calls through that replica answer UNAVAILABLE within
 * the replica's database timeouts, short here, instead of waiting as long as the stall; when the link
 * flows again every call succeeds at once, because no connection left over from the stall is reused.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startReplica, type Replica } from "../packages/server/src/app.js";
import { loadConfig, withBuiltinQueues } from "../packages/server/src/config.js";
import { Code, type TaskClient, TaskqError } from "@taskq/sdk";
import { TcpProxy, type Direction } from "../scripts/tcp-proxy.js";
import { Harness, silentLog } from "./helpers.js";

const QUERY_TIMEOUT_MS = 1_000;
const CONNECT_TIMEOUT_MS = 1_000;
/**
 * Our own bound on waiting for an answer. The stall lasts until the test releases it, after this; an
 * answer before it is an answer during the stall. (Several timeouts long: a call may wait for a free
 * connection, then for a new one.)
 */
const ANSWER_WITHIN_MS = 8_000;

let h: Harness;
let proxy: TcpProxy;
let replica: Replica;
let client: TaskClient;

before(async () => {
  h = await Harness.create();
  const database = new URL(h.databaseUrl);
  proxy = await TcpProxy.start({ host: database.hostname, port: Number(database.port || 5432) });
  const throughProxy = new URL(h.databaseUrl);
  throughProxy.host = `127.0.0.1:${proxy.port}`;
  const config = {
    ...loadConfig({}),
    host: "127.0.0.1",
    port: 0,
    pollIntervalMs: 200,
    builtinSchedules: false,
    queues: withBuiltinQueues({}),
    databaseQueryTimeoutMs: QUERY_TIMEOUT_MS,
    databaseConnectTimeoutMs: CONNECT_TIMEOUT_MS,
  };
  replica = await startReplica({ ...config, databaseUrl: throughProxy.toString() }, silentLog);
  h.replicas.push(replica); // stopped by h.close()
  client = h.client(replica);
});
after(async () => {
  proxy.release();
  await h.close();
  await proxy.close();
});

/** What the call answered: its error, or "ok". Fails if it has not answered within ANSWER_WITHIN_MS. */
async function answer(call: Promise<unknown>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms`)), ANSWER_WITHIN_MS)));
  try {
    return await Promise.race([call.then(() => "ok", (err: unknown) => err), late]);
  } finally {
    clearTimeout(timer);
  }
}

function assertUnavailable(outcome: unknown): void {
  assert.ok(outcome instanceof TaskqError, `expected UNAVAILABLE, got ${String(outcome)}`);
  assert.equal(outcome.code, Code.Unavailable, outcome.message);
}

for (const direction of ["both", "up", "down"] satisfies Direction[]) {
  test(`with the link stalled (${direction}), calls answer UNAVAILABLE; when it flows again, every call succeeds`, async () => {
    const worker = h.worker({}, replica);
    worker.register(`stall.${direction}`, () => "ran");
    await worker.start();
    const before = await client.dispatch(`stall.${direction}`);
    assert.equal(await before.result(), "ran");
    const key = `stall-${direction}`;

    proxy.hold(direction);
    try {
      assertUnavailable(await answer(client.dispatch(`stall.${direction}`, {}, { idempotencyKey: key })));
      // More calls at once than the pool has connections: some wait for one, then open a new one.
      const burst = await Promise.all(Array.from({ length: 30 }, () => answer(client.status(before.id))));
      burst.forEach(assertUnavailable);
    } finally {
      proxy.release();
    }

    // Every call succeeds, the first time. (With "up" held, the first Dispatch's statement reaches
    // Postgres only now and may still insert its task: the idempotency key keeps that to one task.)
    const again = await client.dispatch(`stall.${direction}`, {}, { idempotencyKey: key });
    const { rows } = await h.pool.query("select task_id::text from taskq.idempotency_keys where key = $1", [key]);
    assert.deepEqual(rows.map((r) => r.task_id), [again.id]);
    const statuses = await Promise.all(Array.from({ length: 30 }, () => client.status(before.id)));
    assert.ok(statuses.every((s) => s.status === "completed"));
    assert.equal(await again.result(), "ran", "the worker's stream and the replica's lease dispatcher carried on");
    const after = await client.dispatch(`stall.${direction}`);
    assert.equal(await after.result(), "ran");
  });
}

test("a statement that timed out closes its connection: the pool never hands it out again", async () => {
  const conn = await replica.pool.connect();
  const removed = new Promise<void>((resolve) => replica.pool.on("remove", (c) => c === conn && resolve()));
  proxy.hold("down");
  try {
    const timedOut = await answer(conn.query("select 1"));
    assert.match(String(timedOut), /Query read timeout/);
    const next = await answer(conn.query("select 1"));
    assert.match(String(next), /Client was closed/, "later statements on it fail at once, without waiting out the stall");
  } finally {
    conn.release();
    proxy.release();
  }
  assert.equal(await answer(removed), "ok", "the pool dropped it when it came back");
  const { rows } = await replica.pool.query("select 1 as one");
  assert.equal(rows[0].one, 1);
});
