/**
 * Temp directories in the SDK: a per-task folder under the worker's storage root, kept an hour after
 * the task finishes (or as the handler says), deleted when expired: at worker start (after a restart),
 * hourly, and by the server's hourly taskq.temp-cleanup task.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { ManualClock } from "../packages/server/src/engine/clock.js";
import { RetryableError, type JsonObject } from "@taskq/sdk";
import { TempDirs } from "../packages/sdk/src/internal/temp-dirs.js";
import { Harness } from "./helpers.js";

let h: Harness;
let root: string;
const clock = new ManualClock(new Date("2026-08-01T09:30:00Z"));
before(async () => {
  h = await Harness.create();
  await h.replica({ builtinSchedules: true }, { clock });
  root = await mkdtemp(path.join(tmpdir(), "taskq-temp-"));
});
after(async () => {
  await h.close();
  await rm(root, { recursive: true, force: true });
});

const marker = async (dir: string) => JSON.parse(await readFile(path.join(dir, ".taskq-temp.json"), "utf8"));

test("ctx.tempDir() is a folder per task, kept an hour after the task by default, or as setTempExpiration says", async () => {
  const worker = h.worker({ storageDir: root });
  worker.register("files", async (ctx) => {
    const dir = await ctx.tempDir();
    await writeFile(path.join(dir, "out.txt"), ctx.id);
    if (typeof ctx.params.keepSeconds === "number") await ctx.setTempExpiration(ctx.params.keepSeconds);
    return dir;
  });
  await worker.start();
  const client = h.client();
  const started = Date.now();
  const [byDefault, longer, none] = await Promise.all(
    ([{}, { keepSeconds: 7_200 }, { keepSeconds: 0 }] as JsonObject[]).map(async (params) => (await client.dispatch("files", params)).result<string>()),
  );
  const finished = Date.now();
  for (const [dir, handle] of [[byDefault, "default"], [longer, "longer"], [none, "none"]]) {
    assert.equal(path.dirname(dir), root, `${handle}: under the storage root`);
    assert.ok(existsSync(path.join(dir, "out.txt")));
  }
  const expiry = async (dir: string) => (await marker(dir)).expiresAt as number;
  assert.ok((await expiry(byDefault)) >= started + 3_600_000 && (await expiry(byDefault)) <= finished + 3_600_000, "an hour after the task");
  assert.ok((await expiry(longer)) >= started + 7_200_000 && (await expiry(longer)) <= finished + 7_200_000, "two hours, as asked");

  assert.deepEqual(await worker.removeExpiredTempDirs(), [none], "only the expired folder goes");
  assert.ok(existsSync(byDefault) && existsSync(longer) && !existsSync(none));
  await worker.stop();
});

test("a worker starting up deletes folders that expired while it was down, and leaves the rest", async () => {
  const leftovers = path.join(root, "restart");
  await mkdir(leftovers, { recursive: true });
  const folder = async (name: string, content: object | null, ageMs = 0) => {
    const dir = path.join(leftovers, name);
    await mkdir(dir, { recursive: true });
    if (content) {
      const file = path.join(dir, ".taskq-temp.json");
      await writeFile(file, JSON.stringify(content));
      const at = new Date(Date.now() - ageMs);
      await utimes(file, at, at);
    }
    return dir;
  };
  const expired = await folder("101", { ttlMs: 3_600_000, expiresAt: Date.now() - 1 });
  const crashedLongAgo = await folder("102", { ttlMs: 3_600_000, expiresAt: null }, 2 * 3_600_000);
  const crashedRecently = await folder("103", { ttlMs: 3_600_000, expiresAt: null }, 60_000);
  const keep = await folder("104", { ttlMs: 3_600_000, expiresAt: Date.now() + 60_000 });
  const foreign = await folder("notes", null);

  const worker = h.worker({ storageDir: leftovers });
  worker.register("noop", () => null);
  await worker.start();
  assert.ok(!existsSync(expired) && !existsSync(crashedLongAgo), "expired folders are gone at start");
  assert.ok(existsSync(crashedRecently) && existsSync(keep) && existsSync(foreign), "the others stay");
  await worker.stop();
});

test("the server's hourly taskq.temp-cleanup task runs on an SDK worker and shows in history", async () => {
  const cleanupRoot = path.join(root, "hourly");
  await mkdir(path.join(cleanupRoot, "201"), { recursive: true });
  await writeFile(path.join(cleanupRoot, "201", ".taskq-temp.json"), JSON.stringify({ ttlMs: 1, expiresAt: Date.now() + 5 * 60_000 }));
  const worker = h.worker({ storageDir: cleanupRoot });
  worker.register("noop", () => null);
  await worker.start(); // the folder has not expired yet, so it stays
  assert.ok(existsSync(path.join(cleanupRoot, "201")));
  await writeFile(path.join(cleanupRoot, "201", ".taskq-temp.json"), JSON.stringify({ ttlMs: 1, expiresAt: Date.now() - 1 }));

  clock.set(new Date("2026-08-01T10:00:00Z"));
  const fired = (await h.replicas[0].engine.fireSchedules()).find((f) => f.schedule === "taskq.temp-cleanup")!;
  const handle = h.client().handle(fired.taskId!);
  assert.deepEqual(await handle.result(), { removed: 1 });
  assert.ok(!existsSync(path.join(cleanupRoot, "201")));
  const task = await handle.status();
  assert.deepEqual([task.origin, task.displayInitiator, task.displayTitle], ["system", "Scheduler", "Expired temp directory cleanup"]);
  await worker.stop();
});

test("the engine schedules the cleanup task under the name SDK workers handle", async () => {
  const { TEMP_CLEANUP_TYPE: engineName } = await import("../packages/server/src/engine/maintenance.js");
  const { TEMP_CLEANUP_TYPE: protocolName } = await import("@taskq/protocol");
  assert.equal(engineName, protocolName);
});

test("a retry that reuses its task's folder marks it running again, so a worker sharing the root does not delete it meanwhile", async () => {
  const shared = path.join(root, "retry");
  const minutes = (n: number) => n * 60_000;
  // Another worker on this machine with the same storage root (it spares only its own running tasks),
  // whose cleanup comes 30 minutes into the retry.
  const other = new TempDirs(shared, () => Date.now() + minutes(30));
  const worker = h.worker({ storageDir: shared });
  worker.register("files.retry", async (ctx) => {
    if (ctx.attempt === 1) {
      await writeFile(path.join(await ctx.tempDir(), "partial.txt"), "from attempt 1");
      throw new RetryableError("again", { delayMs: 0 });
    }
    const dir = path.join(shared, ctx.id);
    const left = await marker(dir);
    // As if attempt 1 had ended 50 minutes ago (its retry delay): its folder expires 10 minutes from now.
    await writeFile(path.join(dir, ".taskq-temp.json"), JSON.stringify({ ...left, expiresAt: Date.now() + minutes(10) }));
    assert.equal(await ctx.tempDir(), dir);
    const during = await marker(dir);
    const removedByOther = await other.removeExpired();
    return { left: left.ttlMs, during, removedByOther, kept: existsSync(path.join(dir, "partial.txt")) };
  });
  await worker.start();
  const result = await (await h.client().dispatch("files.retry", {}, { maxAttempts: 2 })).result();
  assert.deepEqual(result, { left: 3_600_000, during: { ttlMs: 3_600_000, expiresAt: null }, removedByOther: [], kept: true });
  await worker.stop();
});

test("a folder whose marker is JSON but does not say how long to keep it is left alone", async () => {
  const odd = path.join(root, "odd-markers");
  const old = new Date(Date.now() - 2 * 3_600_000);
  const folders: string[] = [];
  for (const [name, content] of Object.entries({
    "301": { expiresAt: null },
    "302": { ttlMs: "3600000", expiresAt: null },
    "303": { ttlMs: 1_000, expiresAt: "yesterday" },
    "304": [],
  })) {
    const dir = path.join(odd, name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, ".taskq-temp.json"), JSON.stringify(content));
    await utimes(path.join(dir, ".taskq-temp.json"), old, old);
    folders.push(dir);
  }
  const expired = path.join(odd, "305");
  await mkdir(expired, { recursive: true });
  await writeFile(path.join(expired, ".taskq-temp.json"), JSON.stringify({ ttlMs: 1_000, expiresAt: null }));
  await utimes(path.join(expired, ".taskq-temp.json"), old, old);

  assert.deepEqual(await new TempDirs(odd).removeExpired(), [expired], "only the folder with a readable, expired marker goes");
  for (const dir of folders) assert.ok(existsSync(dir), `${path.basename(dir)} stays`);
});
