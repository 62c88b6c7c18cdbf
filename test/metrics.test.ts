/**
 * Observability: /metrics in the Prometheus text format on the server's own port (over HTTP/1.1, as
 * Prometheus scrapes), counting what the replica did and showing the queues as the database has them;
 * the same port still serves gRPC over HTTP/2 and Connect over HTTP/1.1.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { RetryableError } from "@taskq/sdk";
import type { Replica } from "../packages/server/src/app.js";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import { Harness, scrapeMetrics, waitFor } from "./helpers.js";

let h: Harness;
let replica: Replica;
before(async () => {
  h = await Harness.create();
  replica = await h.replica({ queues: { narrow: { maxWorkers: 2 } } });
});
after(() => h.close());

/**
 * An HTTP/1.1 request on a connection of its own, closed once answered. fetch() would keep it open for
 * the next request, and the harness's teardown takes a connection still open at the end for a leak.
 */
const fetchOnce = (url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  fetch(url, { ...init, headers: { ...init.headers, connection: "close" } });

/** Fetches /metrics and parses its samples: "name{labels}" → value. */
async function scrape(r = replica): Promise<Map<string, number>> {
  const { status, contentType, samples } = await scrapeMetrics(r.server.url);
  assert.equal(status, 200);
  assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  return samples;
}

test("counters, histograms and queue gauges follow what happens", async () => {
  const client = h.client();
  const before = await scrape();
  assert.equal(before.get("taskq_database_up"), 1);
  for (const name of ["process_resident_memory_bytes", "nodejs_heap_size_used_bytes", "nodejs_external_memory_bytes"]) {
    assert.ok((before.get(name) ?? 0) > 0, name);
  }
  assert.equal(before.get("taskq_tasks_dispatched_total"), 0);

  await client.dispatchBatch([
    { type: "m.ok" },
    { type: "m.ok" },
    { type: "m.fail", maxAttempts: 1 },
    { type: "m.flaky", maxAttempts: 2, retryDelayMs: 0 },
  ]);
  await client.dispatchBatch(Array.from({ length: 3 }, () => ({ type: "m.later", queue: "narrow" })));
  const queued = await scrape();
  assert.equal(queued.get("taskq_tasks_dispatched_total"), 7);
  assert.equal(queued.get('taskq_queue_depth{queue="default"}'), 4);
  assert.equal(queued.get('taskq_queue_depth{queue="narrow"}'), 3);
  assert.equal(queued.get('taskq_queue_max_workers{queue="narrow"}'), 2);
  assert.equal(queued.get('taskq_queue_max_workers{queue="default"}'), undefined, "no limit, no sample");

  const worker = h.worker({ concurrency: 4 });
  let flaky = 0;
  worker
    .register("m.ok", () => "done")
    .register("m.fail", () => {
      throw new Error("no");
    })
    .register("m.flaky", () => {
      if (flaky++ === 0) throw new RetryableError("again");
      return "second time";
    });
  await worker.start();
  await waitFor("four outcomes", async () => (await h.count("history")) === 4);

  const after = await scrape();
  assert.equal(after.get('taskq_tasks_finished_total{status="completed"}'), 3);
  assert.equal(after.get('taskq_tasks_finished_total{status="failed"}'), 1);
  assert.equal(after.get('taskq_tasks_retried_total{reason="retry"}'), 1);
  assert.equal(after.get("taskq_lease_latency_seconds_count"), 5, "five leases: four tasks, one retried");
  assert.equal(after.get('taskq_lease_latency_seconds_bucket{le="+Inf"}'), 5);
  assert.equal(after.get('taskq_run_duration_seconds_count{status="completed"}'), 3);
  assert.equal(after.get('taskq_run_duration_seconds_count{status="retried"}'), 1);
  assert.equal(after.get('taskq_queue_depth{queue="default"}'), 0);
  assert.equal(after.get('taskq_queue_depth{queue="narrow"}'), 3);
  assert.equal(after.get("taskq_workers_connected"), 2, "the SDK worker and the server's own maintenance worker");
  // Buckets are cumulative: each is at least the one before.
  const buckets = [...after].filter(([k]) => k.startsWith("taskq_lease_latency_seconds_bucket")).map(([, v]) => v);
  assert.deepEqual(buckets, [...buckets].sort((a, b) => a - b));
});

test("the same port serves Connect over HTTP/1.1 (for browsers and curl) beside gRPC over HTTP/2", async () => {
  const { id } = await h.client().dispatch("m.http1", {}, { title: "over HTTP/1.1" });
  const res = await fetchOnce(`${replica.server.url}/taskq.v1.TaskQueue/Status`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ taskId: id }),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { task: { id: string; title: string } };
  assert.equal(body.task.id, id);
  assert.equal(body.task.title, "over HTTP/1.1");
  const missing = await fetchOnce(`${replica.server.url}/nowhere`);
  assert.equal(missing.status, 404);
  await missing.text();
});

test("claims skip the queue-limit locks while no limited queue has news of work, and take them when it does", async () => {
  const client = h.client();
  const worker = h.worker({ concurrency: 4 });
  worker.register("claims.free", () => "ok");
  await worker.start();
  const count = (m: Map<string, number>, taken: "taken" | "skipped") => m.get(`taskq_claims_total{limit_locks="${taken}"}`) ?? 0;
  const before = await scrape();
  for (let i = 0; i < 30; i++) assert.equal(await (await client.dispatch("claims.free")).result(), "ok");
  const mid = await scrape();
  assert.ok(count(mid, "skipped") > count(before, "skipped"), "default-queue work was claimed without the limit locks");

  // Work in a limited queue is news: it is claimed under the locks, within the limit.
  const limited = await client.dispatchBatch(Array.from({ length: 3 }, () => ({ type: "claims.free", queue: "narrow" })));
  assert.deepEqual(await Promise.all(limited.map((t) => t.result())), ["ok", "ok", "ok"]);
  assert.ok(count(await scrape(), "taken") > count(mid, "taken"));
});

test("the age of the oldest due pending task, per queue: in ListQueues and as a gauge, for autoscalers", async () => {
  const clock = new ManualClock(new Date("2026-06-01T09:00:00Z"));
  const own = await h.replica({ queues: { scaled: {} } }, { clock });
  const client = h.client(own);
  const age = async () => (await client.listQueues()).queues.find((q) => q.name === "scaled")!.oldestDueMs;
  assert.equal(await age(), 0, "an empty queue waits for nothing");

  await client.dispatch("metrics.nobody-runs-this", {}, { queue: "scaled", delayMs: 3_600_000 });
  clock.advance(10_000);
  assert.equal(await age(), 0, "a task not due yet does not count");

  await client.dispatch("metrics.nobody-runs-this", {}, { queue: "scaled" });
  clock.advance(90_000);
  await client.dispatch("metrics.nobody-runs-this", {}, { queue: "scaled" });
  assert.equal(await age(), 90_000, "the oldest due task's wait, not the newest's");
  assert.equal((await scrape(own)).get('taskq_queue_oldest_due_seconds{queue="scaled"}'), 90);
});
