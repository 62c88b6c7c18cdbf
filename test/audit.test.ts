/**
 * The audit log with auth on: Retry, InterruptMany and RetryMany are admin-only, each call that changes
 * something writes one row naming the token used, dry runs write none, and ListAudit pages it newest
 * first. A client token is refused before anything runs.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { TaskQueue } from "@taskq/protocol";
import { TaskClient, TaskqError } from "@taskq/sdk";
import type { Replica } from "../packages/server/src/app.js";
import { tokenDigest, type AuthToken } from "../packages/server/src/rpc/auth.js";
import { Harness } from "./helpers.js";

const TOKENS = {
  ops: { role: "admin", token: "ops-token-0123456789" },
  oncall: { role: "admin", token: "oncall-token-0123456789" },
  "web-app": { role: "client", token: "client-token-0123456789" },
  workers: { role: "worker", token: "worker-token-0123456789" },
} as const;
const authTokens: AuthToken[] = Object.entries(TOKENS).map(([name, t]) => ({ name, role: t.role, sha256: tokenDigest(t.token) }));

let h: Harness;
let replica: Replica;
const closers: (() => unknown)[] = [];

before(async () => {
  h = await Harness.create();
  replica = await h.replica({ authTokens });
});
after(async () => {
  for (const close of closers) await close();
  await h.close();
});

function client(token?: string): TaskClient {
  const c = new TaskClient({ url: replica.server.url, token });
  closers.push(() => c.close());
  return c;
}

const state = async () =>
  (await h.pool.query("select (select count(*) from taskq.tasks) t, (select count(*) from taskq.history) h, (select count(*) from taskq.audit_log) a")).rows[0];

test("each retry and bulk action that changes something is one audit row naming the token; dry runs are none", async () => {
  const ops = client(TOKENS.ops.token);
  const oncall = client(TOKENS.oncall.token);
  const type = "audit.named";
  const tasks = await ops.dispatchBatch(Array.from({ length: 4 }, () => ({ type })));

  assert.deepEqual(await ops.interruptMany({ type }, { dryRun: true }), { count: 4, moreRemain: false });
  assert.deepEqual(await ops.interruptMany({ type }, { reason: "maintenance", limit: 3 }), { count: 3, moreRemain: true });
  const retry = await oncall.retry(tasks[0].id);
  assert.equal((await oncall.retry(tasks[0].id)).created, false, "an idempotent repeat changes nothing");
  assert.deepEqual(await oncall.retryMany({ type, statuses: ["canceled"] }, { dryRun: true }), { count: 2, moreRemain: false });
  assert.deepEqual(await oncall.retryMany({ type, statuses: ["canceled"] }), { count: 2, moreRemain: false });
  assert.deepEqual(await oncall.retryMany({ type, statuses: ["canceled"] }), { count: 0, moreRemain: false });

  const page = await ops.listAudit();
  assert.equal(page.nextPageToken, "");
  assert.deepEqual(
    page.entries.map((e) => [e.actor, e.action, e.affected, e.params]),
    [
      ["oncall", "retry_many", 2, { filter: { type, statuses: ["canceled"] }, limit: 10_000 }],
      ["oncall", "retry", 1, { task_id: tasks[0].id, retry_id: retry.id }],
      ["ops", "interrupt_many", 3, { filter: { type }, limit: 3, reason: "maintenance" }],
    ],
  );
  const times = page.entries.map((e) => e.time.getTime());
  assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
  assert.ok(Number(page.entries[0].id) > Number(page.entries[1].id));

  // Pages of two: the same entries, in the same order.
  const first = await oncall.listAudit({ pageSize: 2 });
  assert.equal(first.entries.length, 2);
  const second = await oncall.listAudit({ pageSize: 2, pageToken: first.nextPageToken });
  assert.deepEqual([...first.entries, ...second.entries].map((e) => e.id), page.entries.map((e) => e.id));
  assert.equal(second.nextPageToken, "", "the last page");
  await assert.rejects(oncall.listAudit({ pageToken: "bm90LWEtdG9rZW4" }), (err: TaskqError) => err.code === Code.InvalidArgument);
  await ops.interruptMany({ type });
});

test("a client token may not retry, act in bulk or read the audit log: PERMISSION_DENIED, and nothing changes", async () => {
  const ops = client(TOKENS.ops.token);
  const type = "audit.refused";
  const [task] = await ops.dispatchBatch([{ type }, { type }]);
  await task.interrupt();
  const before = await state();
  const refusals: [string, TaskClient, Code][] = [
    ["client", client(TOKENS["web-app"].token), Code.PermissionDenied],
    ["worker", client(TOKENS.workers.token), Code.PermissionDenied],
    ["no token", client(), Code.Unauthenticated],
  ];
  for (const [who, c, code] of refusals) {
    const calls: [string, () => Promise<unknown>][] = [
      ["Retry", () => c.retry(task.id)],
      ["InterruptMany", () => c.interruptMany({ type })],
      ["InterruptMany dry run", () => c.interruptMany({ type }, { dryRun: true })],
      ["RetryMany", () => c.retryMany({ type })],
      ["ListAudit", () => c.listAudit()],
    ];
    for (const [name, call] of calls) {
      const err = await call().then(() => null, (e: unknown) => e);
      assert.ok(err instanceof TaskqError, `${name} as ${who}: expected a refusal, got ${String(err)}`);
      assert.equal(err.code, code, `${name} as ${who}`);
    }
  }
  const asClient = client(TOKENS["web-app"].token);
  const err = await asClient.retry(task.id).then(() => null, (e: TaskqError) => e);
  assert.match(err!.message, /role client may not call taskq\.v1\.TaskQueue\/Retry/);
  assert.deepEqual(await state(), before);
  // The client's own calls still work.
  assert.equal((await asClient.status(task.id)).status, "canceled");
  await ops.interruptMany({ type });
});

/** Sends `token` with every call, as a gRPC client in any language would. */
const bearer =
  (token: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

test("a plain gRPC client with an admin token acts in bulk and reads the audit log", async () => {
  const session = new Http2SessionManager(replica.server.url);
  try {
    const transport = createGrpcTransport({
      baseUrl: replica.server.url,
      sessionManager: session,
      interceptors: [bearer(TOKENS.ops.token)],
    });
    const rpc = createClient(TaskQueue, transport);
    const type = "audit.grpc";
    await rpc.dispatchBatch({ tasks: [{ type }, { type }] });
    const res = await rpc.interruptMany({ filter: { type }, reason: "grpc" });
    assert.equal(res.count, 2);
    assert.equal(res.moreRemain, false);
    const retried = await rpc.retryMany({ filter: { type }, limit: 1 });
    assert.deepEqual([retried.count, retried.moreRemain], [1, true]);
    const audit = await rpc.listAudit({ pageSize: 2 });
    assert.deepEqual(audit.entries.map((e) => [e.actor, e.action, e.affected]), [["ops", "retry_many", 1], ["ops", "interrupt_many", 2]]);
    const refused = await createClient(TaskQueue, createGrpcTransport({ baseUrl: replica.server.url, sessionManager: session }))
      .listAudit({})
      .then(() => null, (e: unknown) => e);
    assert.ok(refused instanceof ConnectError && refused.code === Code.Unauthenticated);
    await rpc.interruptMany({ filter: { type } });
  } finally {
    session.abort();
  }
});
