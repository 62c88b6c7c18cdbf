/**
 * The dashboard's task lists in a real browser (headless Chromium, see dashboard-browser.ts): status
 * tabs with counts that filter the list, the type-prefix and queue filters of both lists, and bulk
 * selection (Interrupt selected, Retry selected). Each test keeps to a queue of its own, so the counts
 * it checks are exactly its own tasks'. Screenshots: history-tabs.png, active-tabs.png,
 * bulk-selected.png, bulk-interrupted.png, tabs-10000.png.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { TaskClient, TaskStatusName } from "@taskq/sdk";
import { acceptNextDialog, ARTIFACTS, button, exactly, launchBrowser, openPage } from "./dashboard-browser.js";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
let browser: Browser;
let url: string;

before(async () => {
  h = await Harness.create();
  const queues = Object.fromEntries(["tabs", "lists", "bulk", "bulk2", "big"].map((q) => [q, {}]));
  url = (await h.replica({ queues })).server.url;
  const worker = h.worker({ concurrency: 8 });
  worker.register("tabs.ok", () => ({ ok: true }));
  worker.register("tabs.bad", () => {
    throw new Error("bad on purpose");
  });
  // Runs until interrupted.
  worker.register("lists.hold", (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(null), { once: true })));
  await worker.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.close();
});

const open = (path = "/"): Promise<Page> => openPage(browser, url, path);

/** Waits until the tab of `status` shows exactly `text` as its count ("" for none). */
async function tabCount(page: Page, status: TaskStatusName, text: string): Promise<void> {
  const count = page.locator(`[data-tab="${status}"] .count`);
  await waitFor(`the ${status} tab to count ${JSON.stringify(text)}`, async () => (await count.textContent()) === text);
}

/** The ids of the rows the list shows, sorted. */
const rowIds = async (page: Page) =>
  (await page.locator("tbody tr[data-task]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-task") ?? ""))).sort();

const waitForRows = (page: Page, ids: string[], what: string) => waitFor(what, async () => (await rowIds(page)).join() === [...ids].sort().join());

async function waitForStatus(client: TaskClient, ids: string[], status: TaskStatusName): Promise<void> {
  for (const id of ids) await waitFor(`task ${id} to be ${status}`, async () => (await client.status(id)).status === status);
}

test("Task history: status tabs count each status and filter by it; the queue and type filters narrow both", async () => {
  const client = h.client();
  const ok = await Promise.all([1, 2, 3].map((i) => client.dispatch("tabs.ok", { i }, { queue: "tabs" })));
  const bad = await Promise.all([1, 2].map((i) => client.dispatch("tabs.bad", { i }, { queue: "tabs", maxAttempts: 1 })));
  const dropped = await client.dispatch("tabs.none", {}, { queue: "tabs" });
  await dropped.interrupt();
  await waitForStatus(client, ok.map((t) => t.id), "completed");
  await waitForStatus(client, bad.map((t) => t.id), "failed");

  const page = await open("/#/history");
  await page.selectOption('select[name="queue"]', "tabs");
  await tabCount(page, "completed", "3");
  await tabCount(page, "failed", "2");
  await tabCount(page, "canceled", "1");
  assert.equal(await page.locator('[data-tab="stuck"] .count').textContent(), ""); // a zero shows no number
  await waitForRows(page, [...ok, ...bad, dropped].map((t) => t.id), "all six in the queue's history");

  await page.click('[data-tab="failed"]');
  await waitForRows(page, bad.map((t) => t.id), "only the failed ones");
  assert.equal(await page.locator('[data-tab="failed"]').getAttribute("aria-selected"), "true");
  await page.screenshot({ path: `${ARTIFACTS}/history-tabs.png`, fullPage: true });

  // The type filter is a prefix, and the counts follow it.
  await page.fill('input[name="type"]', "tabs.o");
  await tabCount(page, "failed", "");
  await tabCount(page, "completed", "3");
  await page.locator("td.empty", { hasText: exactly("No tasks yet.") }).waitFor();
  await page.click('[data-tab="all"]');
  await waitForRows(page, ok.map((t) => t.id), "the tasks whose type starts with tabs.o");
  await page.close();
});

test("Active tasks: status tabs, and the queue and type-prefix filters", async () => {
  const client = h.client();
  const daily = await client.dispatch("report.daily", {}, { queue: "lists" });
  const weekly = await client.dispatch("report.weekly", {}, { queue: "lists" });
  const mail = await client.dispatch("mail.send", {}, { queue: "lists" });
  const held = await client.dispatch("lists.hold", {}, { queue: "lists", title: "Held" });
  await waitForStatus(client, [held.id], "running");

  const page = await open("/#/active");
  await page.selectOption('select[name="queue"]', "lists");
  await waitForRows(page, [daily.id, weekly.id, mail.id, held.id], "the queue's four tasks");
  await tabCount(page, "pending", "3");
  await tabCount(page, "running", "1");
  await page.click('[data-tab="running"]');
  await waitForRows(page, [held.id], "the running one");

  await page.click('[data-tab="pending"]');
  await page.fill('input[name="type"]', "report.");
  await waitForRows(page, [daily.id, weekly.id], "the report tasks");
  await tabCount(page, "pending", "2");
  await tabCount(page, "running", "");
  await page.screenshot({ path: `${ARTIFACTS}/active-tabs.png`, fullPage: true });
  await page.close();
  for (const t of [daily, weekly, mail, held]) await t.interrupt();
});

test("Task history: Retry selected retries the rows ticked, and says how many", async () => {
  const client = h.client();
  const bad = await Promise.all([1, 2, 3].map((i) => client.dispatch("tabs.bad", { i }, { queue: "bulk", maxAttempts: 1 })));
  await waitForStatus(client, bad.map((t) => t.id), "failed");
  const page = await open("/#/history");
  await page.selectOption('select[name="queue"]', "bulk");
  await page.click('[data-tab="failed"]');
  await waitForRows(page, bad.map((t) => t.id), "the three failed tasks");

  for (const t of bad.slice(0, 2)) await page.check(`tr[data-task="${t.id}"] input[name="select"]`);
  await page.locator(".selected-count", { hasText: exactly("2 selected") }).waitFor();
  assert.equal(await button(page, "Interrupt selected").isDisabled(), true); // none of them is pending or running
  assert.equal(await button(page, "Retry selected").isEnabled(), true);
  assert.equal(await page.locator('input[name="select-all"]').evaluate((el) => (el as HTMLInputElement).indeterminate), true);
  assert.equal(page.url().endsWith("/#/history"), true, "ticking a row does not open the task");
  await page.screenshot({ path: `${ARTIFACTS}/bulk-selected.png`, fullPage: true });

  const question = acceptNextDialog(page);
  await button(page, "Retry selected").click();
  assert.equal(await question, "Retry 2 selected tasks, each as a new task?");
  await page.locator(".bulk-result", { hasText: exactly("Retried 2 of 2 selected tasks.") }).waitFor();
  assert.equal(await page.locator(".selected-count").count(), 0);
  const after = await Promise.all(bad.map((t) => client.status(t.id)));
  assert.deepEqual(
    after.map((t) => t.retriedAs !== ""),
    [true, true, false],
  );
  await page.close();
});

test("Active tasks: select every row on the page, then Interrupt selected", async () => {
  const client = h.client();
  const tasks = await Promise.all([1, 2, 3].map((i) => client.dispatch("bulk.none", { i }, { queue: "bulk2" })));
  const page = await open("/#/active");
  await page.selectOption('select[name="queue"]', "bulk2");
  await waitForRows(page, tasks.map((t) => t.id), "the three pending tasks");
  await page.check('input[name="select-all"]');
  await page.locator(".selected-count", { hasText: exactly("3 selected") }).waitFor();
  assert.equal(await button(page, "Retry selected").isDisabled(), true); // none of them failed, was canceled or is stuck

  const question = acceptNextDialog(page);
  await button(page, "Interrupt selected").click();
  assert.equal(await question, "Interrupt 3 selected tasks?");
  await page.locator(".bulk-result", { hasText: exactly("Interrupted 3 of 3 selected tasks.") }).waitFor();
  await page.locator("td.empty", { hasText: exactly("No active tasks.") }).waitFor();
  await page.screenshot({ path: `${ARTIFACTS}/bulk-interrupted.png`, fullPage: true });
  for (const t of tasks) assert.equal((await client.status(t.id)).status, "canceled");
  await page.close();
});

test("a count past 10,000 shows as 10,000+", async () => {
  const client = h.client();
  for (let i = 0; i < 11; i++) await client.dispatchBatch(Array.from({ length: 1_000 }, () => ({ type: "big.none", queue: "big" })));
  const page = await open("/#/active");
  await page.selectOption('select[name="queue"]', "big");
  await tabCount(page, "pending", "10,000+");
  await page.screenshot({ path: `${ARTIFACTS}/tabs-10000.png` });
  await page.close();
});
