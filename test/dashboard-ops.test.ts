/**
 * The dashboard's operator screens in a real browser (headless Chromium, see dashboard-browser.ts):
 * the activity charts (uPlot) over the server's stats samples, the workers view, Pause and Resume on
 * the queues view (and the refusal a client token gets), the queues' key and rate limits with the keys
 * of each queue, the page at 760 px wide, and the icon. The replica samples stats every 200 ms.
 * Screenshots: charts.png, workers.png, queues-paused.png, queues-keys.png, queues-refused.png,
 * narrow-760.png, narrow-760-task.png, narrow-760-queues.png.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { TaskClient, TaskStatusName } from "@taskq/sdk";
import { tokenDigest } from "../packages/server/src/rpc/auth.js";
import { ARTIFACTS, button, exactly, launchBrowser, openPage } from "./dashboard-browser.js";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
let browser: Browser;
let url: string;
const queues = {
  ...Object.fromEntries(["charts", "charts-b", "depth", "ops", "ops2", "manykeys"].map((q) => [q, {}])),
  // For the queues view's limits and keys: one task of a key at a time; one task an hour.
  tenants: { maxRunningPerKey: 1, keyWeights: { acme: 2 } },
  metered: { rateLimit: { tasks: 1, perMs: 3_600_000, burst: 1 } },
};

before(async () => {
  h = await Harness.create();
  url = (await h.replica({ queues, statsIntervalMs: 200 })).server.url;
  const worker = h.worker({ concurrency: 8, queues: ["default", "charts", "charts-b", "depth"] });
  worker.register("ops.ok", () => ({ ok: true }));
  worker.register("ops.bad", () => {
    throw new Error("bad on purpose");
  });
  await worker.start();
  // A worker of its own for the workers view: one queue, one type, which runs until interrupted.
  const watcher = h.worker({ name: "ops-worker", concurrency: 3, queues: ["ops"] });
  watcher.register("ops.watch", (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(null), { once: true })));
  await watcher.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.close();
});

const open = (path = "/", opts: { width?: number } = {}): Promise<Page> => openPage(browser, url, path, opts);

async function waitForStatus(client: TaskClient, ids: string[], status: TaskStatusName): Promise<void> {
  for (const id of ids) await waitFor(`task ${id} to be ${status}`, async () => (await client.status(id)).status === status);
}

/** Waits until the line of numbers above chart `name` reads exactly `text` (or matches it). */
const summary = (page: Page, name: "finished" | "depth", text: string | RegExp) =>
  page.locator(`[data-summary="${name}"]`, { hasText: typeof text === "string" ? exactly(text) : text }).waitFor();

// First in this file (a database of its own): the charts' counts are then exactly this test's tasks.
test("the charts show tasks finished by status and queue depth, per queue and summed over all queues", async () => {
  const client = h.client();
  const ok = await Promise.all([1, 2, 3].map((i) => client.dispatch("ops.ok", { i }, { queue: "charts" })));
  const okB = await Promise.all([1, 2].map((i) => client.dispatch("ops.ok", { i }, { queue: "charts-b" })));
  const bad = await client.dispatch("ops.bad", {}, { queue: "charts", maxAttempts: 1 });
  const dropped = await client.dispatch("ops.none", {}, { queue: "charts" });
  await dropped.interrupt();
  await h.rpc().pauseQueue({ queue: "depth" });
  await Promise.all([1, 2].map((i) => client.dispatch("ops.ok", { i }, { queue: "depth" })));
  await waitForStatus(client, [...ok, ...okB].map((t) => t.id), "completed");
  await waitForStatus(client, [bad.id], "failed");

  const page = await open("/#/queues");
  await page.locator('.chart[data-chart="finished"] canvas').first().waitFor();
  await page.locator('.chart[data-chart="depth"] canvas').first().waitFor();
  await page.selectOption('select[name="stats-queue"]', "charts");
  await summary(page, "finished", "Last hour: 3 completed · 1 failed · 1 canceled · 0 stuck");
  await page.selectOption('select[name="stats-queue"]', "depth");
  await summary(page, "depth", /^At \d\d:\d\d:\d\d: 2 pending · 0 running$/);
  await page.selectOption('select[name="stats-queue"]', "");
  await summary(page, "finished", "Last hour: 5 completed · 1 failed · 1 canceled · 0 stuck");
  await summary(page, "depth", /^At \d\d:\d\d:\d\d: 2 pending · 0 running$/);
  await page.locator(".charts").screenshot({ path: `${ARTIFACTS}/charts.png` });
  await page.close();
  await h.rpc().resumeQueue({ queue: "depth" });
});

test("the workers view shows each connected worker: name, replica, types, queues, capacity, running tasks, heartbeat", async () => {
  const client = h.client();
  const task = await client.dispatch("ops.watch", {}, { queue: "ops", title: "Watched" });
  await waitForStatus(client, [task.id], "running");
  const replica = (await client.status(task.id)).attemptHistory[0].replica;

  const page = await open("/#/workers");
  const row = page.locator("tr[data-worker]").filter({ has: page.getByRole("cell", { name: "ops-worker", exact: true }) });
  await row.locator(`a[href="#/task/${task.id}"]`).waitFor();
  const cells = await row.locator("td").allInnerTexts();
  assert.deepEqual([cells[0], cells[1], cells[3]], ["ops-worker", replica, "ops"]);
  assert.ok(cells[2].split(", ").includes("ops.watch"), cells[2]); // (the SDK adds its temp-cleanup type)
  assert.match(cells[4], /^3 \/ \d free$/);
  assert.equal(cells[5], `1: #${task.id}`);
  assert.match(cells[7], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(.+ ago\)$/); // last heartbeat
  // The other worker of the test, with its four queues (the replica's own maintenance worker, which
  // takes from every queue, shows "all").
  await page.locator("tr[data-worker]").filter({ has: page.getByRole("cell", { name: "default, charts, charts-b, depth", exact: true }) }).waitFor();
  await page.screenshot({ path: `${ARTIFACTS}/workers.png`, fullPage: true });

  await row.locator(`a[href="#/task/${task.id}"]`).click();
  await page.locator('section[data-view="task"] h1', { hasText: exactly(`Task ${task.id}`) }).waitFor();
  await page.close();
  await task.interrupt();
});

test("Pause and Resume on the queues view pause and resume the queue", async () => {
  const client = h.client();
  const page = await open("/#/queues");
  const row = page.locator('tr[data-queue="ops2"]');
  await row.locator('button[name="pause"]').click();
  await row.locator("td", { hasText: exactly("Paused") }).waitFor();
  await row.locator('button[name="resume"]').waitFor();
  assert.equal((await client.listQueues()).queues.find((q) => q.name === "ops2")?.paused, true);
  await page.screenshot({ path: `${ARTIFACTS}/queues-paused.png`, fullPage: true });

  await row.locator('button[name="resume"]').click();
  await row.locator("td", { hasText: exactly("Running") }).waitFor();
  assert.equal((await client.listQueues()).queues.find((q) => q.name === "ops2")?.paused, false);
  await page.close();
});

test("the queues view shows key and rate limits, the tasks they hold back, and each queue's keys", async () => {
  const client = h.client();
  const worker = h.worker({ name: "keys-worker", concurrency: 4, queues: ["tenants", "metered"] });
  worker.register("keys.hold", (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(null), { once: true })));
  await worker.start();
  // tenants: acme's first task runs and its second waits for it; globex's runs. metered: one of two runs.
  const acme1 = await client.dispatch("keys.hold", {}, { queue: "tenants", concurrencyKey: "acme" });
  await waitForStatus(client, [acme1.id], "running");
  const held = [
    await client.dispatch("keys.hold", {}, { queue: "tenants", concurrencyKey: "acme" }),
    await client.dispatch("keys.hold", {}, { queue: "tenants", concurrencyKey: "globex" }),
    await client.dispatch("keys.hold", {}, { queue: "metered" }),
    await client.dispatch("keys.hold", {}, { queue: "metered" }),
  ];
  // manykeys (paused): more keys than ListQueues lists.
  await h.rpc().pauseQueue({ queue: "manykeys" });
  const many = await client.dispatchBatch(Array.from({ length: 102 }, (_, i) => ({ type: "keys.none", queue: "manykeys", concurrencyKey: `k${i}` })));
  const tasks = [acme1, ...held, ...many];
  await waitFor("globex's task and one metered task to run", async () => {
    const { queues } = await client.listQueues();
    const running = (name: string) => queues.find((q) => q.name === name)?.running;
    return running("tenants") === 2 && running("metered") === 1;
  });

  const page = await open("/#/queues");
  const row = (queue: string) => page.locator(`[data-table="queues"] tr[data-queue="${queue}"]`);
  const field = (queue: string, name: string, text: string) => row(queue).locator(`[data-field="${name}"]`, { hasText: exactly(text) }).waitFor();
  await field("tenants", "held-by-key-limit", "1 held by key limit");
  await field("tenants", "max-running-per-key", "at most 1 running");
  await field("tenants", "key-weights", "acme ×2");
  assert.equal(await row("tenants").locator('[data-field="held-by-rate-limit"]').count(), 0, "no count while none is held");
  await field("metered", "held-by-rate-limit", "1 held by rate limit");
  await field("metered", "rate-limit", "1 per h, burst 1 · 0.0 tokens free");
  assert.equal(await row("metered").locator('[data-field="rate-tokens"]').textContent(), "0.0");
  assert.deepEqual(await row("ops2").locator("td").allInnerTexts(), ["ops2", "0", "0 / ∞", "—", "Running", "Pause"]);

  const keyCells = (queue: string, key: string) => page.locator(`[data-table="keys"] tr[data-queue="${queue}"][data-key="${key}"] td`).allInnerTexts();
  assert.deepEqual(await keyCells("tenants", "acme"), ["tenants", "acme", "1 / 1", "1", "—"]);
  assert.deepEqual(await keyCells("tenants", "globex"), ["tenants", "globex", "1 / 1", "0", "—"]);
  assert.deepEqual(await keyCells("manykeys", "k0"), ["manykeys", "k0", "0", "1", "—"]);
  assert.equal(await page.locator('[data-table="keys"] tr[data-queue="manykeys"][data-key]').count(), 100);
  await page.locator('[data-table="keys"] tr[data-queue="manykeys"] [data-field="more-keys"]', { hasText: exactly("manykeys: 2 more keys") }).waitFor();
  assert.equal(await page.locator('[data-table="keys"] tr[data-queue="metered"]').count(), 0, "a queue without keys has no rows");
  await page.screenshot({ path: `${ARTIFACTS}/queues-keys.png`, fullPage: true });

  await page.setViewportSize({ width: 760, height: 900 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.equal(overflow, 0, `at 760 px the queues view scrolls the page sideways by ${overflow} px`);
  await page.close();
  await Promise.all(tasks.map((t) => t.interrupt()));
  await h.rpc().resumeQueue({ queue: "manykeys" });
  await worker.stop();
});

test("with auth on, Pause with a client token says plainly that it needs an admin token; an admin token pauses", async () => {
  const authTokens = [
    { name: "viewer", role: "client" as const, sha256: tokenDigest("client-token-for-the-dashboard") },
    { name: "operator", role: "admin" as const, sha256: tokenDigest("admin-token-for-the-dashboard") },
  ];
  const secured = await h.replica({ authTokens, queues });
  const login = async (token: string) => {
    const page = await browser.newPage();
    await page.goto(`${secured.server.url}/#/queues`);
    await page.fill('input[name="token"]', token);
    await page.click('button[type="submit"]');
    await page.locator('tr[data-queue="ops2"]').waitFor();
    return page;
  };

  const viewer = await login("client-token-for-the-dashboard");
  await viewer.locator('tr[data-queue="ops2"] button[name="pause"]').click();
  const refusal = /^Pausing queue ops2 needs an admin token: the server refused this one \(.*PauseQueue.*\)\.$/;
  await viewer.locator('[role="alert"]', { hasText: refusal }).waitFor();
  assert.equal(await viewer.locator(".login").count(), 0, "the view stays; the token form is for a missing or unknown token");
  assert.equal((await h.client().listQueues()).queues.find((q) => q.name === "ops2")?.paused, false);
  await viewer.screenshot({ path: `${ARTIFACTS}/queues-refused.png`, fullPage: true });
  await viewer.close();

  const operator = await login("admin-token-for-the-dashboard");
  await operator.locator('tr[data-queue="ops2"] button[name="pause"]').click();
  await operator.locator('tr[data-queue="ops2"] button[name="resume"]').waitFor();
  await operator.locator('tr[data-queue="ops2"] button[name="resume"]').click();
  await operator.locator('tr[data-queue="ops2"] button[name="pause"]').waitFor();
  await operator.close();
  await h.stopReplica(secured);
});

test("at 760 px wide no view scrolls the page sideways, and the nav wraps to fit", async () => {
  const client = h.client();
  const task = await client.dispatch("ops.ok", { note: "a narrow window" }, { title: "Narrow" });
  await waitForStatus(client, [task.id], "completed");
  // Rows with long titles in Active tasks (no worker takes from ops2): the table is wider than the window.
  const waiting = await Promise.all(
    [1, 2].map((i) => client.dispatch("ops.none", {}, { queue: "ops2", title: `A long title that makes the table wider than a narrow window, number ${i}` })),
  );
  const page = await open("/#/active", { width: 760 });
  const fits = async (what: string) => {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, `${what} scrolls the page sideways by ${overflow} px`);
    for (const box of await Promise.all((await page.locator("nav a").all()).map((a) => a.boundingBox()))) {
      assert.ok(box && box.x + box.width <= 760, `${what}: a nav link ends past the window's edge`);
    }
  };
  for (const t of waiting) await page.locator(`tr[data-task="${t.id}"]`).waitFor();
  await fits("Active tasks");
  const box = await page.locator('section[data-view="active"] .table-box').evaluate((el) => ({ scroll: el.scrollWidth, client: el.clientWidth }));
  assert.ok(box.scroll > box.client, "the table scrolls inside its own box");
  await page.screenshot({ path: `${ARTIFACTS}/narrow-760.png`, fullPage: true });

  await page.click('nav a[data-view="history"]');
  await page.locator(`section[data-view="history"] tr[data-task="${task.id}"]`).waitFor();
  await fits("Task history");

  await page.click('nav a[data-view="queues"]');
  await page.locator('.chart[data-chart="depth"] canvas').first().waitFor();
  await fits("Queues and schedules");
  await page.screenshot({ path: `${ARTIFACTS}/narrow-760-queues.png`, fullPage: true });

  await page.click('nav a[data-view="workers"]');
  await page.locator("section[data-view='workers'] tr[data-worker]").first().waitFor();
  await fits("Workers");

  await page.goto(`${url}/#/task/${task.id}`);
  await page.locator('[data-status="Completed"]').waitFor();
  await page.locator('section.attempt[data-attempt="1"] [data-outcome="Succeeded"]').waitFor();
  await fits("a task's page");
  await page.screenshot({ path: `${ARTIFACTS}/narrow-760-task.png`, fullPage: true });
  await page.close();
  for (const t of waiting) await t.interrupt();
});

test("the page declares an icon, and it loads as an image", async () => {
  const page = await open("/");
  const href = await page.locator('link[rel="icon"]').getAttribute("href");
  assert.equal(href, "/favicon.svg");
  const loaded = await page.evaluate(async (src) => {
    const res = await fetch(src);
    const img = new Image();
    img.src = src;
    await img.decode();
    return { status: res.status, type: res.headers.get("content-type"), width: img.naturalWidth };
  }, href);
  assert.deepEqual(loaded, { status: 200, type: "image/svg+xml", width: 32 });
  await button(page, "Next").waitFor(); // the page itself came up
  await page.close();
});
