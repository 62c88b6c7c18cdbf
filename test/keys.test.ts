/**
 * Concurrency keys: a task dispatched with one keeps it through its life (Status and the lists while
 * active, history once finished, a retry made from history), and its handler sees it; a key the server
 * cannot keep is refused before anything is written.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ConnectError, Code } from "@connectrpc/connect";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica();
});
after(() => h.close());

test("a task's concurrency key is kept through its life, and its handler sees it", async () => {
  const client = h.client();
  const keyed = await client.dispatch("keys.run", { n: 1 }, { concurrencyKey: "tenant-ü-7" });
  const plain = await client.dispatch("keys.run", { n: 2 });
  const [batched] = await client.dispatchBatch([{ type: "keys.run", params: { n: 3 }, concurrencyKey: "tenant-8" }]);

  assert.equal((await keyed.status()).concurrencyKey, "tenant-ü-7");
  assert.equal((await plain.status()).concurrencyKey, "");
  const active = await client.listActive({ type: "keys.run" });
  assert.deepEqual(new Map(active.tasks.map((t) => [t.id, t.concurrencyKey])), new Map([[keyed.id, "tenant-ü-7"], [plain.id, ""], [batched.id, "tenant-8"]]));

  const seen: [number, string][] = [];
  const worker = h.worker();
  worker.register("keys.run", (ctx) => {
    seen.push([ctx.params.n as number, ctx.concurrencyKey]);
    if (ctx.params.n === 1) throw new Error("fails");
  });
  await worker.start();
  await waitFor("every task to finish", async () => (await client.listActive({ type: "keys.run" })).tasks.length === 0);
  assert.deepEqual(new Map(seen), new Map([[1, "tenant-ü-7"], [2, ""], [3, "tenant-8"]]));

  const finished = await keyed.status();
  assert.equal(finished.status, "failed");
  assert.equal(finished.concurrencyKey, "tenant-ü-7", "history keeps the key");
  const history = await client.listHistory({ type: "keys.run" });
  assert.deepEqual(new Map(history.tasks.map((t) => [t.id, t.concurrencyKey])), new Map([[keyed.id, "tenant-ü-7"], [plain.id, ""], [batched.id, "tenant-8"]]));

  const retry = await client.retry(keyed.id);
  assert.equal((await retry.status()).concurrencyKey, "tenant-ü-7", "a retry keeps the key");
  await waitFor("the retry to run", () => seen.length === 4);
  assert.deepEqual(seen[3], [1, "tenant-ü-7"]);
});

test("a concurrency key over 200 characters or holding a NUL character is refused, and nothing is queued", async () => {
  const rpc = h.rpc();
  const before = await h.count("tasks");
  for (const [concurrencyKey, says] of [
    ["k".repeat(201), "concurrency_key: longer than 200 characters"],
    ["a\0b", "concurrency_key: holds a NUL character"],
  ] as const) {
    await assert.rejects(rpc.dispatch({ type: "keys.bad", concurrencyKey }), (err: unknown) => {
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.rawMessage, new RegExp(says));
      return true;
    });
  }
  await assert.rejects(rpc.dispatchBatch({ tasks: [{ type: "keys.bad" }, { type: "keys.bad", concurrencyKey: "k".repeat(201) }] }), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.InvalidArgument);
    return true;
  });
  assert.equal(await h.count("tasks"), before);
  // 200 characters is the limit, not over it.
  const ok = await rpc.dispatch({ type: "keys.bad", concurrencyKey: "k".repeat(200) });
  assert.equal(ok.created, true);
});
