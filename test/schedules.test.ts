/**
 * Cron schedules, on an injected clock: each tick fires once (also with two replicas trying), scheduled
 * tasks are SYSTEM tasks initiated by "Scheduler", a tick is skipped while the previous run is active,
 * ticks missed while every server was down run once, time zones hold across a DST change, and a
 * worker can declare a schedule in its hello.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import type { Engine, ScheduleConfig } from "../packages/server/src/engine/index.js";
import { Code, TaskqError } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";

const EVERY_MINUTE: ScheduleConfig = { name: "every-minute", cron: "* * * * *", type: "tick", params: { from: "config" } };

/** The ticks one schedule fired (built-in maintenance schedules may fire in the same round). */
const firedBy = async (engine: Engine, schedule: string) => (await engine.fireSchedules()).filter((f) => f.schedule === schedule);

const runs = async (h: Harness, schedule: string) =>
  (await h.pool.query<{ n: number }>("select count(*)::int4 as n from taskq.schedule_runs where schedule = $1", [schedule])).rows[0].n;

describe("one replica", () => {
  let h: Harness;
  const clock = new ManualClock(new Date("2026-01-05T10:00:30Z"));
  before(async () => {
    h = await Harness.create();
    await h.replica({ schedules: [EVERY_MINUTE] }, { clock });
  });
  after(() => h.close());

  test("a tick dispatches a SYSTEM task by Scheduler in the scheduled queue; the next waits for the previous run", async () => {
    const engine = h.replicas[0].engine;
    const client = h.client();
    const listed = (await client.listSchedules()).find((s) => s.name === "every-minute")!;
    assert.deepEqual(
      { name: listed.name, cron: listed.cron, timeZone: listed.timeZone, source: listed.source, next: listed.nextRunAt.toISOString() },
      { name: "every-minute", cron: "* * * * *", timeZone: "UTC", source: "config", next: "2026-01-05T10:01:00.000Z" },
    );
    assert.deepEqual(await firedBy(engine, "every-minute"), [], "nothing is due before the tick");

    clock.set(new Date("2026-01-05T10:01:00Z"));
    const [first] = await firedBy(engine, "every-minute");
    assert.equal(first.tick.toISOString(), "2026-01-05T10:01:00.000Z");
    const task = await client.status(first.taskId!);
    assert.deepEqual(
      { origin: task.origin, initiator: task.initiator, shown: task.displayInitiator, queue: task.queue, type: task.type, params: task.params },
      { origin: "system", initiator: "Scheduler", shown: "Scheduler", queue: "scheduled", type: "tick", params: { from: "config" } },
    );

    clock.set(new Date("2026-01-05T10:02:00Z"));
    const [skipped] = await firedBy(engine, "every-minute");
    assert.equal(skipped.taskId, null, "debounced: the previous run is still pending");
    assert.equal(await runs(h, "every-minute"), 1);

    const worker = h.worker();
    worker.register("tick", (ctx) => ({ ran: ctx.id }));
    await worker.start();
    await client.handle(first.taskId!).result();
    clock.set(new Date("2026-01-05T10:03:00Z"));
    const [third] = await firedBy(engine, "every-minute");
    assert.ok(third.taskId, "the previous run finished, so this tick runs");
    await client.handle(third.taskId!).result();
    const after = (await client.listSchedules()).find((s) => s.name === "every-minute")!;
    assert.equal(after.lastRunAt?.toISOString(), "2026-01-05T10:03:00.000Z");
    assert.equal(after.lastTaskId, third.taskId);
    assert.equal(after.lastStatus, "completed");
    assert.equal(after.nextRunAt.toISOString(), "2026-01-05T10:04:00.000Z");
    await worker.stop();
  });

  test("ticks missed while every server was down run once when a server starts again", async () => {
    await h.stopReplica(h.replicas[0]);
    clock.set(new Date("2026-01-05T10:17:30Z")); // 14 ticks missed
    const before = await runs(h, "every-minute");
    const replica = await h.replica({ schedules: [EVERY_MINUTE] }, { clock });
    await waitFor("the missed tick to run", async () => (await runs(h, "every-minute")) === before + 1);
    const { rows } = await h.pool.query("select tick from taskq.schedule_runs where schedule = 'every-minute' order by tick desc limit 1");
    assert.equal(rows[0].tick.toISOString(), "2026-01-05T10:04:00.000Z", "the one run is for the first missed tick");
    assert.deepEqual(await firedBy(replica.engine, "every-minute"), []);
    const listed = (await h.client(replica).listSchedules()).find((s) => s.name === "every-minute")!;
    assert.equal(listed.nextRunAt.toISOString(), "2026-01-05T10:18:00.000Z", "then the schedule goes on from now");
    assert.equal(await runs(h, "every-minute"), before + 1);
  });
});

describe("a schedule removed from the config", () => {
  let h: Harness;
  before(async () => (h = await Harness.create()));
  after(() => h.close());

  test("is removed when a replica starts without it; the others stay", async () => {
    const first = await h.replica({ schedules: [EVERY_MINUTE, { ...EVERY_MINUTE, name: "kept" }] });
    assert.deepEqual((await h.client(first).listSchedules()).map((s) => s.name), ["every-minute", "kept"]);
    await h.stopReplica(first);
    const second = await h.replica({ schedules: [{ ...EVERY_MINUTE, name: "kept" }] });
    assert.deepEqual((await h.client(second).listSchedules()).map((s) => s.name), ["kept"]);
  });
});

describe("two replicas", () => {
  let h: Harness;
  const clock = new ManualClock(new Date("2026-02-01T00:00:10Z"));
  before(async () => {
    h = await Harness.create();
    await h.replica({ schedules: [EVERY_MINUTE] }, { clock });
    await h.replica({ schedules: [EVERY_MINUTE] }, { clock });
  });
  after(() => h.close());

  test("both firing the same schedule for 20 ticks produce 20 runs", async () => {
    const [a, b] = h.replicas;
    const worker = h.worker({}, b);
    worker.register("tick", () => "ok");
    await worker.start();
    for (let minute = 1; minute <= 20; minute++) {
      clock.set(new Date(Date.UTC(2026, 1, 1, 0, minute)));
      const fired = (await Promise.all([firedBy(a.engine, "every-minute"), firedBy(b.engine, "every-minute")])).flat();
      const tasks = fired.flatMap((f) => (f.taskId ? [f.taskId] : []));
      assert.equal(tasks.length, 1, `tick ${minute} fired once`);
      await h.client(a).handle(tasks[0]).result();
    }
    assert.equal(await runs(h, "every-minute"), 20);
    const { rows } = await h.pool.query("select count(*)::int4 as n from taskq.history where type = 'tick' and status = 'completed'");
    assert.equal(rows[0].n, 20);
    await worker.stop();
  });
});

describe("time zones and worker-declared schedules", () => {
  let h: Harness;
  const clock = new ManualClock(new Date("2026-03-27T12:00:00Z"));
  before(async () => {
    h = await Harness.create();
    await h.replica(
      { schedules: [{ name: "morning", cron: "0 9 * * *", timeZone: "Europe/Berlin", type: "report" }] },
      { clock },
    );
  });
  after(() => h.close());

  test("09:00 in Europe/Berlin stays 09:00 local across the spring DST change", async () => {
    const engine = h.replicas[0].engine;
    const worker = h.worker();
    worker.register("report", () => null);
    await worker.start();
    const next = async () => (await h.client().listSchedules()).find((s) => s.name === "morning")!.nextRunAt.toISOString();
    const seen: string[] = [];
    for (let day = 0; day < 3; day++) {
      const at = await next();
      seen.push(at);
      clock.set(new Date(at));
      const [fired] = await firedBy(engine, "morning");
      await h.client().handle(fired.taskId!).result();
    }
    // CET is UTC+1 until 2026-03-29 02:00, CEST UTC+2 after.
    assert.deepEqual(seen, ["2026-03-28T08:00:00.000Z", "2026-03-29T07:00:00.000Z", "2026-03-30T07:00:00.000Z"]);
    await worker.stop();
  });

  test("a worker's hello declares a schedule; a malformed one is INVALID_ARGUMENT naming it", async () => {
    const worker = h.worker();
    worker.register("digest", () => null, { schedule: "*/15 * * * *", timeZone: "America/New_York" });
    await worker.start();
    const digest = (await h.client().listSchedules()).find((s) => s.name === "digest")!;
    assert.deepEqual(
      { cron: digest.cron, timeZone: digest.timeZone, type: digest.type, queue: digest.queue, source: digest.source },
      { cron: "*/15 * * * *", timeZone: "America/New_York", type: "digest", queue: "scheduled", source: "worker" },
    );
    assert.equal(digest.nextRunAt.toISOString(), "2026-03-30T07:15:00.000Z");
    await worker.stop();

    const raw = h.rawWorker();
    raw.send({ case: "hello", value: { workerName: "bad", taskTypes: [{ name: "broken", schedule: "0 9 * * mon-" }] } });
    const err = TaskqError.from(await raw.result());
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.message, /^hello\.task_types\[0\]\.schedule: "0 9 \* \* mon-" is not a valid cron expression/);
    assert.equal((await h.client().listSchedules()).some((s) => s.name === "broken"), false);
  });
});

describe("built-in maintenance", () => {
  let h: Harness;
  const clock = new ManualClock(new Date("2026-04-01T12:00:00Z"));
  before(async () => {
    h = await Harness.create();
    await h.replica({ historyRetentionDays: 30, builtinSchedules: true }, { clock });
  });
  after(() => h.close());

  test("history retention runs daily at 02:00 in the server, deletes what finished over 30 days ago and older audit entries, and shows in history", async () => {
    const engine = h.replicas[0].engine;
    const client = h.client();
    const builtins = (await client.listSchedules()).filter((s) => s.source === "builtin").map((s) => [s.name, s.cron]);
    assert.deepEqual(builtins, [
      ["taskq.history-retention", "0 2 * * *"],
      ["taskq.temp-cleanup", "0 * * * *"],
    ]);

    const worker = h.worker();
    worker.register("old", (ctx) => void ctx.log("a step"));
    await worker.start();
    const old = await client.dispatch("old", {}, { idempotencyKey: "old-1" });
    await old.result();
    // An operator's bulk action now, and another after the jump: only the first is old enough to go.
    await client.dispatch("unrun", {});
    assert.equal((await client.interruptMany({ type: "unrun" }, { reason: "old" })).count, 1);
    // One jump to a tick, 32 days on. The scheduler's own timer may fire the tick before the call below
    // does; either way it fires once, and the task finished now is not old enough to go.
    clock.set(new Date("2026-05-03T02:00:00Z"));
    const recent = await client.dispatch("old", {}, { idempotencyKey: "recent-1" });
    await recent.result();
    await client.dispatch("unrun", {});
    assert.equal((await client.interruptMany({ type: "unrun" }, { reason: "recent" })).count, 1);
    await engine.fireSchedules();
    const retention = (await client.listSchedules()).find((s) => s.name === "taskq.history-retention")!;
    assert.equal(retention.lastRunAt?.toISOString(), "2026-04-02T02:00:00.000Z", "the missed ticks ran once, as the first of them");
    const cleanup = client.handle(retention.lastTaskId);
    assert.deepEqual(await cleanup.result(), {
      deletedTasks: 2,
      deletedLogSteps: 1,
      deletedAuditEntries: 1,
      finishedBefore: "2026-04-03T02:00:00.000Z",
    });
    assert.deepEqual(
      (await client.listAudit()).entries.map((e) => e.params.reason),
      ["recent"],
      "the audit entry from before the retention period went",
    );
    await assert.rejects(old.status(), (err: TaskqError) => err.code === Code.NotFound);
    assert.equal((await recent.status()).status, "completed");
    const keys = (await h.pool.query("select key from taskq.idempotency_keys order by key")).rows.map((r) => r.key);
    assert.deepEqual(keys, ["recent-1"], "the deleted task's idempotency key went with it");
    assert.equal((await h.pool.query("select count(*)::int4 as n from taskq.task_log where task_id = $1", [old.id])).rows[0].n, 0);

    const task = await cleanup.status();
    assert.deepEqual(
      { origin: task.origin, initiator: task.displayInitiator, worker: task.worker, title: task.displayTitle },
      { origin: "system", initiator: "Scheduler", worker: "taskq-server", title: "History retention" },
    );
    assert.match(task.log[0].message, /^deleted 2 tasks that finished before 2026-04-03T02:00:00\.000Z/);
    assert.equal(task.log[1].message, "deleted 1 audit log entries made before 2026-04-03T02:00:00.000Z");
    await worker.stop();
  });
});

describe("the built-in temp-cleanup schedule", () => {
  let h: Harness;
  const clock = new ManualClock(new Date("2026-04-01T12:30:00Z"));
  before(async () => {
    h = await Harness.create();
    await h.replica({ builtinSchedules: true }, { clock });
  });
  after(() => h.close());

  test("skips its ticks while no connected worker runs it, so workers in other languages never find it waiting", async () => {
    const engine = h.replicas[0].engine;
    const other = h.rawWorker(); // a worker that does not run taskq.temp-cleanup, as one in another language
    other.hello(["report"], 1);
    const sessionsOf = async (type: string) =>
      (await h.pool.query("select 1 from taskq.worker_sessions where $1 = any(task_types)", [type])).rowCount;
    await waitFor("the worker's session", async () => (await sessionsOf("report")) === 1);
    clock.set(new Date("2026-04-01T13:00:00Z"));
    assert.deepEqual(await firedBy(engine, "taskq.temp-cleanup"), [
      { schedule: "taskq.temp-cleanup", tick: new Date("2026-04-01T13:00:00Z"), taskId: null, skipped: "no connected worker runs it" },
    ]);
    assert.equal((await h.client().listActive({ type: "taskq.temp-cleanup" })).tasks.length, 0);

    const sdk = h.worker(); // SDK workers run it
    sdk.register("report", () => null);
    await sdk.start();
    await waitFor("the SDK worker's session", async () => (await sessionsOf("taskq.temp-cleanup")) === 1);
    clock.set(new Date("2026-04-01T14:00:00Z"));
    const [fired] = await firedBy(engine, "taskq.temp-cleanup");
    assert.ok(fired?.taskId, "with a worker that runs it connected, the tick fires");
    const run = h.client().handle(fired.taskId);
    await run.result();
    assert.equal((await run.status()).status, "completed");
    await sdk.stop();
  });
});
