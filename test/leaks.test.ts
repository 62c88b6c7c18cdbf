/**
 * The harness's teardown fails on a leak (test/helpers.ts, Harness.close): a worker stream or a
 * connection that the test opened and never closed is still open on its replica once the test's own
 * clients and workers are closed, and close() says so, naming it, after stopping everything anyway.
 * The leaks here are real ones, left open on purpose; each is closed by the test once close() failed.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { connect } from "@taskq/sdk";
import { Health } from "@taskq/protocol/grpc";
import { Harness, RawWorker, leftOpen, openConnections, waitFor } from "./helpers.js";

/**
 * A leak never closes by itself, so any deadline shows it; a short one keeps a test quick where nothing
 * else is closing at the same time (a worker the harness closed may take a moment to go, on a busy machine).
 */
const LEAK_CHECK_MS = 500;

test("teardown fails on a worker stream left open, naming the session and its connection", async () => {
  const h = await Harness.create();
  const replica = await h.replica();
  const closed = h.worker(); // the harness's: closed by it, so not a leak
  closed.register("leak.used", async () => "ok");
  await closed.start();
  const leaked = new RawWorker(replica.server.url); // not the harness's: nobody closes it
  leaked.hello(["leak.type"], 1);
  await leaked.next("welcome");
  await waitFor("both sessions", () => leftOpen(replica)[0] === "2 worker session(s)");

  // The default deadline: the harness's own worker is closing meanwhile, and must not be counted.
  await assert.rejects(h.close(), (err: Error) => {
    assert.match(err.message, /^leaked: still open \d+ ms after the test's clients and workers were closed:\n/);
    assert.match(err.message, /: 1 worker session\(s\), 1 connection\(s\) \(from 127\.0\.0\.1:\d+\)$/);
    return true;
  });
  await waitFor("close() to have stopped the replica all the same", () => openConnections(replica.server.port).length === 0);
  await leaked.close();
});

test("teardown fails on a connection left open after a unary call", async () => {
  const h = await Harness.create();
  const replica = await h.replica();
  const conn = connect({ url: replica.server.url });
  await createClient(Health, conn.transport).check({});
  assert.equal(openConnections(replica.server.port).length, 1);

  await assert.rejects(h.close({ leakCheckMs: LEAK_CHECK_MS }), /: 1 connection\(s\) \(from 127\.0\.0\.1:\d+\)$/);
  conn.close();
});

test("teardown passes once the test closed what it opened", async () => {
  const h = await Harness.create();
  const replica = await h.replica();
  const raw = new RawWorker(replica.server.url);
  raw.hello(["leak.type"], 1);
  await raw.next("welcome");
  const conn = connect({ url: replica.server.url });
  await createClient(Health, conn.transport).check({});
  await raw.close();
  conn.close();
  await h.close();
});
