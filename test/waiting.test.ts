/**
 * Why a pending task is not running yet, in Status and ListActive: not due, its queue paused, no worker
 * for it, its queue's or the global limit full, or its workers busy.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { TaskInfo } from "@taskq/sdk";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import { Harness } from "./helpers.js";

const clock = new ManualClock(new Date("2026-06-01T09:00:00Z"));
let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica({ queues: { narrow: { maxWorkers: 1 }, held: {} } }, { clock });
});
after(() => h.close());

const waiting = (t: TaskInfo) => t.waiting && { reason: t.waiting.reason, detail: t.waiting.detail };

test("not due, queue paused, no worker: each said with its detail, in Status and in ListActive", async () => {
  const client = h.client();
  const later = await client.dispatch("waiting.later", {}, { delayMs: 3_600_000 });
  assert.deepEqual(waiting(await later.status()), { reason: "not_due", detail: "due at 2026-06-01T10:00:00.000Z" });

  const orphan = await client.dispatch("waiting.nobody", {});
  assert.deepEqual(waiting(await orphan.status()), { reason: "no_worker", detail: 'no connected worker runs type "waiting.nobody" from queue "default"' });

  const paused = await client.dispatch("waiting.nobody", {}, { queue: "held" });
  await client.pauseQueue("held");
  assert.deepEqual(waiting(await paused.status()), { reason: "queue_paused", detail: 'queue "held" is paused' });
  await client.resumeQueue("held");
  assert.equal((await paused.status()).waiting?.reason, "no_worker");

  const page = await client.listActive({ type: "waiting.nobody" });
  assert.deepEqual(
    page.tasks.map((t) => [t.id, t.waiting?.reason]).sort(),
    [
      [orphan.id, "no_worker"],
      [paused.id, "no_worker"],
    ].sort(),
  );
});

test("a full queue limit; workers busy; a running task waits for nothing", async () => {
  const client = h.client();
  const w = h.rawWorker();
  w.hello(["waiting.narrow", "waiting.busy"], 1, ["narrow", "default"]);
  const first = await client.dispatch("waiting.narrow", {}, { queue: "narrow" });
  assert.equal((await w.next("lease")).taskId, first.id);

  const second = await client.dispatch("waiting.narrow", {}, { queue: "narrow" });
  assert.deepEqual(waiting(await second.status()), { reason: "queue_limit", detail: 'queue "narrow" runs 1 of its max_workers 1' });
  assert.equal((await first.status()).waiting, null, "a running task waits for nothing");

  // Its only credit went to the first lease: a task of its other type waits for a free one.
  const busy = await client.dispatch("waiting.busy", {});
  const status = await busy.status();
  assert.equal(status.waiting?.reason, "workers_busy");
  assert.match(status.waiting?.detail ?? "", /^1 connected worker\(s\) run it, with \d+ free credit\(s\) at their last heartbeat$/);
});

test("a full global limit", async () => {
  // A database of its own: the global limit counts every running task in it.
  const g = await Harness.create();
  try {
    const own = await g.replica({ globalMaxWorkers: 1 }, { clock });
    const client = g.client(own);
    const w = g.rawWorker(own);
    w.hello(["waiting.global"], 2);
    const first = await client.dispatch("waiting.global", {});
    assert.equal((await w.next("lease")).taskId, first.id);
    const second = await client.dispatch("waiting.global", {});
    assert.deepEqual(waiting(await second.status()), { reason: "global_limit", detail: "1 tasks run, of global_max_workers 1" });
  } finally {
    await g.close();
  }
});
