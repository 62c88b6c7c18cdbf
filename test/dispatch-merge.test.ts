/**
 * A client's concurrent dispatch() calls go to the server as one DispatchBatch, and each caller still
 * gets the answer a call of its own would get: its own task, its own idempotent repeat, its own
 * INVALID_ARGUMENT. With mergeDispatches: false every call is a Dispatch of its own.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Interceptor } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { Code, TaskClient, type TaskqError } from "@taskq/sdk";
import { Harness } from "./helpers.js";

let h: Harness;
let url: string;
const sessions: Http2SessionManager[] = [];
before(async () => {
  h = await Harness.create();
  url = (await h.replica()).server.url;
});
after(async () => {
  for (const s of sessions) s.abort();
  await h.close();
});

/** A client whose calls are counted by method name. */
function countingClient(mergeDispatches?: boolean): { client: TaskClient; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const count: Interceptor = (next) => (req) => {
    calls.set(req.method.name, (calls.get(req.method.name) ?? 0) + 1);
    return next(req);
  };
  const session = new Http2SessionManager(url);
  sessions.push(session);
  const client = new TaskClient({ transport: createGrpcTransport({ baseUrl: url, interceptors: [count], sessionManager: session }), mergeDispatches });
  return { client, calls };
}

test("calls made at the same moment go as one DispatchBatch, each with its own task", async () => {
  const { client, calls } = countingClient();
  const handles = await Promise.all(Array.from({ length: 50 }, (_, i) => client.dispatch("merge.one", { i })));
  assert.equal(new Set(handles.map((t) => t.id)).size, 50);
  assert.deepEqual(Object.fromEntries(calls), { DispatchBatch: 1 });
  for (const [i, t] of handles.entries()) assert.deepEqual((await t.status()).params, { i }, "each caller's handle names its own task");

  // Calls one after another go one by one, as Dispatch.
  await client.dispatch("merge.one", {});
  await client.dispatch("merge.one", {});
  assert.deepEqual(Object.fromEntries(calls), { DispatchBatch: 1, Dispatch: 2, Status: 50 });
});

test("a repeated idempotency key in one batch names one task; the repeat says it was not created", async () => {
  const { client } = countingClient();
  const [a, b] = await Promise.all([1, 2].map(() => client.dispatch("merge.key", {}, { idempotencyKey: "merge-key-1" })));
  assert.equal(a.id, b.id);
  assert.deepEqual([a.created, b.created].sort(), [false, true]);
});

test("one invalid call fails alone, with the message a call of its own gets; the others are queued", async () => {
  const { client, calls } = countingClient();
  const results = await Promise.allSettled([
    client.dispatch("merge.good", {}),
    client.dispatch("not a valid type!", {}),
    client.dispatch("merge.good", {}, { queue: "no-such-queue" }),
    client.dispatch("merge.good", {}),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ["fulfilled", "rejected", "rejected", "fulfilled"],
  );
  const [, badType, badQueue] = results as PromiseRejectedResult[];
  assert.equal((badType.reason as TaskqError).code, Code.InvalidArgument);
  assert.match((badType.reason as TaskqError).message, /^type: "not a valid type!" may hold only/);
  assert.match((badQueue.reason as TaskqError).message, /^queue: queue "no-such-queue" is not defined/);
  // The batch was refused before anything was written, then each call went alone.
  assert.deepEqual(Object.fromEntries(calls), { DispatchBatch: 1, Dispatch: 4 });
  const good = results.filter((r): r is PromiseFulfilledResult<Awaited<ReturnType<TaskClient["dispatch"]>>> => r.status === "fulfilled");
  assert.equal(new Set(good.map((r) => r.value.id)).size, 2);
});

test("with mergeDispatches: false every call is a Dispatch of its own", async () => {
  const { client, calls } = countingClient(false);
  await Promise.all(Array.from({ length: 5 }, () => client.dispatch("merge.alone", {})));
  assert.deepEqual(Object.fromEntries(calls), { Dispatch: 5 });
});
