/**
 * The Active tasks and Task history views: every column, every filter, every sort in both directions,
 * and page tokens that stay correct while tasks are inserted. Also the task details behind a row.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import { Code, TaskqError, type ActiveSortKey, type ActiveStatusName, type TaskClient, type TaskInfo, type TaskOrigin } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";

const clock = new ManualClock(new Date("2026-07-01T10:00:00Z"));
let h: Harness;
let client: TaskClient;
before(async () => {
  h = await Harness.create();
  await h.replica({}, { clock });
  client = h.client();
});
after(() => h.close());

/** Dispatches one task a second apart on the injected clock, so created_at is known and distinct. */
async function dispatchAt(type: string, opts: Parameters<TaskClient["dispatch"]>[2] = {}, params = {}) {
  clock.advance(1_000);
  const handle = await client.dispatch(type, params, opts);
  return { id: handle.id, createdAt: clock.now() };
}

/** Every page of a list, following page tokens. */
async function allPages(list: (pageToken: string) => Promise<{ tasks: TaskInfo[]; nextPageToken: string }>, between?: () => Promise<void>) {
  const seen: TaskInfo[] = [];
  let token = "";
  do {
    const page = await list(token);
    seen.push(...page.tasks);
    token = page.nextPageToken;
    if (token) await between?.();
  } while (token);
  return seen;
}

describe("ListActive", () => {
  const dispatched: { id: string; createdAt: Date; title: string; type: string; priority: number; origin: "user" | "system" }[] = [];

  before(async () => {
    const specs = [
      { title: "Bravo", type: "build", priority: 12, origin: "user" },
      { title: "", type: "deploy", priority: 10, origin: "system" },
      { title: "Alpha", type: "report", priority: 9, origin: "user" },
      { title: "Delta", type: "build", priority: 5, origin: "system" },
      { title: "Charlie", type: "deploy", priority: 4, origin: "user" },
      { title: "", type: "report", priority: 0, origin: "user" },
      { title: "Echo", type: "build", priority: 7, origin: "system" },
      { title: "Alpha", type: "deploy", priority: 12, origin: "system" },
      { title: "Foxtrot", type: "build", priority: 3, origin: "user" },
      { title: "Golf", type: "report", priority: 10, origin: "user" },
      { title: "Hotel", type: "build", priority: 0, origin: "system" },
      { title: "India", type: "deploy", priority: 5, origin: "user" },
    ] as const;
    for (const s of specs) {
      const { id, createdAt } = await dispatchAt(s.type, { title: s.title, priority: s.priority, origin: s.origin });
      dispatched.push({ id, createdAt, ...s });
    }
    // Three builds start (the highest priorities first); one of them is then interrupted.
    const raw = h.rawWorker();
    raw.hello(["build"], 3);
    for (let i = 0; i < 3; i++) await raw.next("lease");
    await client.interrupt(dispatched[0].id, "testing");
  });

  test("every column of the seed's table, with Untitled and the priority band", async () => {
    const { tasks } = await client.listActive({ pageSize: 500 });
    assert.deepEqual(tasks.map((t) => t.id), dispatched.map((d) => d.id), "default order: created_at, then id");
    const running = new Set([dispatched[0].id, dispatched[6].id, dispatched[3].id]); // build priorities 12, 7, 5
    for (const [i, t] of tasks.entries()) {
      const d = dispatched[i];
      assert.equal(t.origin, d.origin);
      assert.equal(t.displayTitle, d.title || "Untitled");
      assert.equal(t.title, d.title);
      assert.equal(t.createdAt.getTime(), d.createdAt.getTime());
      assert.equal(t.priority, d.priority);
      assert.equal(t.priorityBand, d.priority >= 10 ? "high" : d.priority >= 5 ? "medium" : "low");
      assert.equal(t.type, d.type);
      const expectedStatus = i === 0 ? "cancelling" : running.has(d.id) ? "running" : "pending";
      assert.equal(t.status, expectedStatus, `task ${i}`);
      assert.equal(t.attempts, running.has(d.id) ? 1 : 0);
      assert.equal(t.startedAt === null, !running.has(d.id), "a waiting task has no start time");
    }
  });

  const sortKeys: Record<ActiveSortKey, (t: TaskInfo) => number | string> = {
    id: (t) => Number(t.id),
    status: (t) => ["pending", "running", "cancelling"].indexOf(t.status),
    title: (t) => t.displayTitle,
    created: (t) => t.createdAt.getTime(),
    started: (t) => t.startedAt?.getTime() ?? -Infinity,
    attempts: (t) => t.attempts,
    priority: (t) => t.priority,
    type: (t) => t.type,
    origin: (t) => t.origin,
  };

  test("every column sorts both ways, and pages of 5 join up to the same order", async () => {
    const { tasks: all } = await client.listActive({ pageSize: 500 });
    for (const [sort, key] of Object.entries(sortKeys) as [ActiveSortKey, (t: TaskInfo) => number | string][]) {
      for (const descending of [false, true]) {
        const ascending = [...all].sort((a, b) => {
          const [x, y] = [key(a), key(b)];
          return x < y ? -1 : x > y ? 1 : Number(a.id) - Number(b.id);
        });
        const expected = (descending ? ascending.reverse() : ascending).map((t) => t.id);
        const paged = await allPages((pageToken) => client.listActive({ sort, descending, pageSize: 5, pageToken }));
        assert.deepEqual(paged.map((t) => t.id), expected, `${sort} ${descending ? "desc" : "asc"}`);
      }
    }
  });

  test("filters: id, title search, type, status, created range", async () => {
    const ids = async (req: Parameters<TaskClient["listActive"]>[0]) => (await client.listActive(req)).tasks.map((t) => t.id);
    assert.deepEqual(await ids({ id: dispatched[4].id }), [dispatched[4].id]);
    assert.deepEqual(await ids({ titleSearch: "ALPH" }), [dispatched[2].id, dispatched[7].id], "title search ignores case");
    assert.deepEqual(await ids({ type: "report" }), [dispatched[2].id, dispatched[5].id, dispatched[9].id]);
    assert.deepEqual(await ids({ statuses: ["cancelling"] }), [dispatched[0].id]);
    assert.deepEqual((await ids({ statuses: ["running", "cancelling"] })).length, 3);
    const from = dispatched[3].createdAt;
    const to = dispatched[6].createdAt;
    assert.deepEqual(
      await ids({ createdAfter: from, createdBefore: to }),
      [dispatched[3].id, dispatched[4].id, dispatched[5].id],
      "created_after is inclusive, created_before exclusive",
    );
    const literal = await dispatchAt("search", { title: "100% done" });
    await dispatchAt("search", { title: "1000 done" });
    assert.deepEqual(await ids({ titleSearch: "100%" }), [literal.id], "% in a search is a character, not a wildcard");
    assert.deepEqual(await ids({ type: "build", titleSearch: "e" }), [dispatched[3].id, dispatched[6].id, dispatched[10].id], "filters combine");
  });

  test("a name the wire has no value for is refused before the call; one the server refuses comes back as its error", async () => {
    const invalid = (pattern: RegExp) => (err: unknown) => err instanceof TaskqError && err.code === Code.InvalidArgument && pattern.test(err.message);
    await assert.rejects(client.listActive({ sort: "colour" as ActiveSortKey }), invalid(/^sort: "colour" is not one of id, status, /));
    await assert.rejects(client.listActive({ sort: "toString" as ActiveSortKey }), invalid(/^sort: "toString"/));
    await assert.rejects(client.listActive({ statuses: ["running", "done" as ActiveStatusName] }), invalid(/^statuses\[1\]: "done" is not a status$/));
    await assert.rejects(client.listActive({ createdBefore: new Date(Number.NaN) }), invalid(/^createdBefore: not a valid date$/));
    await assert.rejects(client.listHistory({ origin: "robot" as TaskOrigin }), invalid(/^origin: "robot" is not user or system$/));
    // A status, but not an active one: the server's answer.
    await assert.rejects(client.listActive({ statuses: ["completed" as ActiveStatusName] }), invalid(/^statuses\[0\]:/));
  });

  test("paging stays correct while tasks are inserted", async () => {
    const originals = new Set<string>();
    for (let i = 0; i < 20; i++) originals.add((await dispatchAt("stream", { priority: i % 3 })).id);
    for (const [sort, descending] of [
      ["created", false],
      ["priority", true],
      ["id", true],
    ] as const) {
      let inserted = 0;
      const paged = await allPages(
        (pageToken) => client.listActive({ type: "stream", sort, descending, pageSize: 4, pageToken }),
        async () => {
          // New tasks land before and after the page boundary.
          await dispatchAt("stream", { priority: 2 });
          await dispatchAt("stream", { priority: 0 });
          inserted += 2;
        },
      );
      const ids = paged.map((t) => t.id);
      assert.equal(new Set(ids).size, ids.length, "no task twice");
      for (const id of originals) assert.ok(ids.includes(id), `task ${id} was skipped`);
      const key = sortKeys[sort];
      for (let i = 1; i < paged.length; i++) {
        const [a, b] = [paged[i - 1], paged[i]];
        const order = key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : Number(a.id) - Number(b.id);
        assert.ok(descending ? order > 0 : order < 0, `${sort}: rows ${i - 1} and ${i} out of order`);
      }
      assert.ok(inserted > 0);
      for (const t of paged) originals.add(t.id);
    }
  });
});

describe("ListHistory and task details", () => {
  const made: Record<string, { id: string; createdAt: Date }> = {};

  before(async () => {
    const worker = h.worker();
    worker.register("ExecuteScript", async (ctx) => {
      ctx.log("connecting");
      ctx.setStatus("host", "db-1");
      ctx.progress(100);
      if (ctx.params.fail) throw new Error("script exited with 2");
      if (ctx.params.hang) await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
      return { exitCode: 0 };
    });
    made.userDone = await dispatchAt("ExecuteScript", { initiator: "alice", nodeId: "node-7" });
    made.systemDone = await dispatchAt("ExecuteScript", { origin: "system", title: "Nightly backup" });
    made.userFailed = await dispatchAt("ExecuteScript", { initiator: "bob" }, { fail: true });
    made.systemFailed = await dispatchAt("ExecuteScript", { origin: "system" }, { fail: true });
    made.canceled = await dispatchAt("Unhandled", { initiator: "carol" });
    made.running = await dispatchAt("ExecuteScript", { origin: "system" }, { hang: true });
    made.pending = await dispatchAt("Unhandled");
    await client.interrupt(made.canceled.id);
    await worker.start();
    await waitFor("the outcomes", async () => {
      const statuses = await Promise.all(
        [made.userDone, made.systemDone, made.userFailed, made.systemFailed, made.running].map(async (m) => (await client.status(m.id)).status),
      );
      return statuses.join() === "completed,completed,failed,failed,running";
    });
  });

  const historyIds = async (req: Parameters<TaskClient["listHistory"]>[0]) =>
    (await client.listHistory({ type: "", ...req })).tasks.filter((t) => Object.values(made).some((m) => m.id === t.id)).map((t) => t.id);

  test("rows show status, created, a title made from the type, and Scheduler (system) or API (user) for no initiator; newest first", async () => {
    const { tasks } = await client.listHistory({ pageSize: 500 });
    const rows = tasks.filter((t) => Object.values(made).some((m) => m.id === t.id));
    assert.deepEqual(
      rows.map((t) => t.id),
      [made.running, made.canceled, made.systemFailed, made.userFailed, made.systemDone, made.userDone].map((m) => m.id),
      "running and finished tasks, newest first; pending ones are not history",
    );
    const byId = new Map(rows.map((t) => [t.id, t]));
    assert.equal(byId.get(made.userDone.id)!.displayTitle, "Execute script");
    assert.equal(byId.get(made.systemDone.id)!.displayTitle, "Nightly backup");
    assert.equal(byId.get(made.userDone.id)!.displayInitiator, "alice");
    assert.equal(byId.get(made.systemDone.id)!.displayInitiator, "Scheduler");
    assert.equal((await client.status(made.pending.id)).displayInitiator, "API", "a user task without an initiator is not the Scheduler's");
    assert.equal(byId.get(made.canceled.id)!.status, "canceled");
    assert.equal(byId.get(made.userDone.id)!.createdAt.getTime(), made.userDone.createdAt.getTime());
  });

  test("the origin filter is symmetric: USER only user rows, SYSTEM only system rows, ALL both", async () => {
    const user = [made.canceled, made.userFailed, made.userDone].map((m) => m.id);
    const system = [made.running, made.systemFailed, made.systemDone].map((m) => m.id);
    assert.deepEqual(await historyIds({ origin: "user", pageSize: 500 }), user);
    assert.deepEqual(await historyIds({ origin: "system", pageSize: 500 }), system);
    assert.equal((await historyIds({ origin: undefined, pageSize: 500 })).length, 6);
  });

  test("status filter and created range", async () => {
    assert.deepEqual(await historyIds({ statuses: ["failed"], pageSize: 500 }), [made.systemFailed.id, made.userFailed.id]);
    assert.deepEqual(await historyIds({ statuses: ["running"], pageSize: 500 }), [made.running.id]);
    assert.deepEqual(await historyIds({ statuses: ["canceled", "completed"], origin: "user", pageSize: 500 }), [
      made.canceled.id,
      made.userDone.id,
    ]);
    assert.deepEqual(await historyIds({ createdAfter: made.systemDone.createdAt, createdBefore: made.canceled.createdAt, pageSize: 500 }), [
      made.systemFailed.id,
      made.userFailed.id,
      made.systemDone.id,
    ]);
  });

  test("pages of 2 join up newest first, and tasks dispatched meanwhile do not shift them", async () => {
    const before = (await client.listHistory({ pageSize: 500 })).tasks.map((t) => t.id);
    const paged = await allPages(
      (pageToken) => client.listHistory({ pageSize: 2, pageToken }),
      async () => void (await client.interrupt((await dispatchAt("Unhandled")).id)),
    );
    assert.deepEqual(paged.map((t) => t.id), before);
  });

  test("rows created at the same moment are ordered by id as a number, across pages", async () => {
    // One batch shares one created_at; size it so its ids cross a power of ten (…98, 99, 100, 101…).
    const probe = Number((await dispatchAt("burst")).id);
    const size = Math.min(1_000, 10 ** String(probe).length - probe + 5);
    const handles = await client.dispatchBatch(Array.from({ length: size }, () => ({ type: "burst" })));
    await Promise.all([client.handle(String(probe)), ...handles].map((x) => x.interrupt()));
    const paged = await allPages((pageToken) => client.listHistory({ type: "burst", pageSize: 7, pageToken }));
    const expected = [String(probe), ...handles.map((x) => x.id)].sort((a, b) => Number(b) - Number(a));
    assert.deepEqual(paged.map((t) => t.id), expected);
  });

  test("task details carry node_id, the timeline of log steps with times, status values, and the result or error", async () => {
    const done = await client.status(made.userDone.id);
    assert.equal(done.nodeId, "node-7");
    assert.deepEqual(done.log.map((s) => [s.seq, s.message, s.attempt]), [[1, "connecting", 1]]);
    assert.ok(done.log[0].time instanceof Date && done.log[0].time.getTime() > 0);
    assert.deepEqual(done.statusValues, { host: "db-1", progress: 100 });
    assert.deepEqual(done.result, { exitCode: 0 });
    assert.equal(done.displayInitiator, "alice");
    const failed = await client.status(made.userFailed.id);
    assert.equal(failed.error, "script exited with 2");
    assert.equal(failed.result, undefined);
    assert.equal(failed.displayTitle, "Execute script");
  });
});
