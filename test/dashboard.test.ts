/**
 * The dashboard in a real browser: headless Debian Chromium driven by playwright-core against a
 * replica on loopback. Dispatched tasks show in Active tasks; a task's page shows log lines as they
 * arrive; Interrupt (confirmed) ends it Canceled in Task history; the origin filter works; queues and
 * schedules show; with auth on, the page asks for a token and uses it. Screenshots go to
 * test-artifacts/dashboard (ignored by git). The newer screens have their own files:
 * dashboard-lists.test.ts (status tabs, filters, bulk selection), dashboard-task.test.ts (attempts,
 * retry, the log panel), dashboard-ops.test.ts (workers, pause and resume, charts, a narrow window,
 * the icon).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { tokenDigest } from "../packages/server/src/rpc/auth.js";
import { ARTIFACTS, button, exactly, launchBrowser, openPage } from "./dashboard-browser.js";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
let browser: Browser;
let url: string;
let release: () => void = () => {};

before(async () => {
  h = await Harness.create();
  const replica = await h.replica({
    queues: { default: {}, reports: { maxWorkers: 2 } },
    schedules: [{ name: "nightly-cleanup", cron: "0 3 * * *", timeZone: "Europe/Berlin", type: "dash.cleanup" }],
  });
  url = replica.server.url;
  let released = false;
  release = () => {
    released = true;
  };
  const worker = h.worker({ concurrency: 4 });
  // Logs a step every 150 ms, with progress, until interrupted; once released, returns after step 3.
  worker.register("dash.steps", async (ctx) => {
    for (let i = 1; ; i++) {
      ctx.log(`step ${i}`);
      await ctx.progress(Math.min(100, i * 10));
      if (released && i >= 3) return { steps: i };
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          ctx.signal.removeEventListener("abort", wake);
          resolve();
        };
        const t = setTimeout(wake, 150);
        ctx.signal.addEventListener("abort", wake, { once: true });
      });
      if (ctx.signal.aborted) return null;
    }
  });
  await worker.start();
  browser = await launchBrowser();
});

after(async () => {
  release();
  await browser?.close();
  await h?.close();
});

/** The log line whose message is exactly `message` (a line is time, message). */
const logLine = (page: Page, message: string) => page.locator("ol.timeline li").filter({ has: page.getByText(message, { exact: true }) });

/** The pager's label for page `n` (Active tasks adds " · refreshed <time>" to it). */
const pageLabel = (page: Page, n: number) => page.locator(".pager .origin", { hasText: new RegExp(`^Page ${n}( · refreshed .*)?$`) });

/** A sortable column header by its whole label. */
const header = (page: Page, label: string) => page.locator("th.sortable", { hasText: exactly(label) });

const open = (path = "/"): Promise<Page> => openPage(browser, url, path);

test("Active tasks lists dispatched tasks with their columns, searchable by title and type", async () => {
  const client = h.client();
  const waiting = await client.dispatch("dash.unclaimed", {}, { title: "Nightly export", priority: 12 });
  await client.dispatch("dash.unclaimed", {}, { title: "Thumbnail batch", priority: 6 });
  await client.dispatch("dash.other", {}, { priority: 1 });
  const page = await open();
  const row = page.locator(`tr[data-task="${waiting.id}"]`);
  await row.waitFor();
  // The first cell holds the row's checkbox (bulk selection).
  const cells = await row.locator("td").allInnerTexts();
  assert.equal(cells[0], "");
  assert.equal(cells[1], "User");
  assert.equal(cells[2], waiting.id);
  assert.equal(cells[3], "Pending");
  assert.equal(cells[4], "Nightly export");
  assert.equal(cells[6], "—"); // not started
  assert.equal(cells[8], "High");
  assert.equal(cells[9], "dash.unclaimed");
  const thumbnails = page.locator("tbody tr[data-task]").filter({ has: page.getByRole("cell", { name: "Thumbnail batch", exact: true }) });
  assert.equal(await thumbnails.locator(".badge.medium").textContent(), "Medium");

  const titles = () => page.locator("tbody tr[data-task] td:nth-child(5)").allInnerTexts();
  await page.fill('input[name="title"]', "thumbnail");
  await waitFor("the title search", async () => (await titles()).join() === "Thumbnail batch");
  await page.fill('input[name="title"]', "");
  await page.fill('input[name="type"]', "dash.other");
  await waitFor("the type search", async () => (await titles()).join() === "Untitled");

  await page.fill('input[name="type"]', "");
  await page.fill('input[name="id"]', waiting.id);
  await waitFor("the id search", async () => (await titles()).join() === "Nightly export");
  await page.fill('input[name="id"]', "");
  await page.fill('input[name="after"]', "2099-01-01T00:00");
  await page.locator("td.empty", { hasText: exactly("No active tasks.") }).waitFor();
  await page.fill('input[name="after"]', "");
  await page.fill('input[name="before"]', "2099-01-01T00:00");
  await waitFor("the created-before filter", async () => (await titles()).length === 3);
  await page.fill('input[name="before"]', "");

  // Live: a task dispatched while the page is open shows up by itself.
  const late = await client.dispatch("dash.unclaimed", {}, { title: "Arrived later" });
  await page.locator(`tr[data-task="${late.id}"]`).waitFor();
  await client.interrupt(late.id);
  await waitFor("it to leave Active tasks", async () => (await page.locator(`tr[data-task="${late.id}"]`).count()) === 0);

  // Sorting by priority, lowest first, then highest first.
  await page.fill('input[name="type"]', "");
  await waitFor("all three again", async () => (await titles()).length === 3);
  const bands = () => page.locator("tbody tr[data-task] td:nth-child(9)").allInnerTexts();
  // (Created at, newest first, the default order, happens to be Low, Medium, High too: wait for the header.)
  await header(page, "Priority").click();
  await page.locator("th.sorted:not(.desc)", { hasText: exactly("Priority") }).waitFor();
  await waitFor("ascending priority", async () => (await bands()).join() === "Low,Medium,High");
  await header(page, "Priority").click();
  await page.locator("th.sorted.desc", { hasText: exactly("Priority") }).waitFor();
  await waitFor("descending priority", async () => (await bands()).join() === "High,Medium,Low");
  await page.screenshot({ path: `${ARTIFACTS}/active.png`, fullPage: true });
  await page.close();
});

test("Active tasks pages through more tasks than fit one page", async () => {
  const many = await h.client().dispatchBatch(Array.from({ length: 55 }, (_, i) => ({ type: "dash.many", title: `many ${i}` })));
  const page = await open();
  await page.fill('input[name="type"]', "dash.many");
  const count = () => page.locator("tbody tr[data-task]").count();
  await waitFor("a full first page", async () => (await count()) === 50);
  await button(page, "Next").click();
  await pageLabel(page, 2).waitFor();
  await waitFor("the other 5", async () => (await count()) === 5);
  await button(page, "Previous").click();
  await pageLabel(page, 1).waitFor();
  await waitFor("the first page again", async () => (await count()) === 50);
  await page.close();
  for (const t of many) await t.interrupt(); // out of the way of the other tests
});

test("a task's page shows log lines as they arrive; Interrupt ends it Canceled, as history then shows", async () => {
  const client = h.client();
  const task = await client.dispatch("dash.steps", {}, { title: "Long report" });
  const page = await open(`/#/task/${task.id}`);
  await logLine(page, "step 1").waitFor();
  // A line that arrives live, after the snapshot: one past the last the page showed at first (the
  // handler logs a step every 150 ms until interrupted; a page that loaded late shows several).
  const shown = await page.locator("ol.timeline li").count();
  await logLine(page, `step ${shown + 1}`).waitFor();
  await page.locator('[data-key="progress"] [role="progressbar"]').waitFor();
  assert.equal(await page.locator("[data-status]").first().textContent(), "Running");
  await page.screenshot({ path: `${ARTIFACTS}/task-running.png`, fullPage: true });

  page.once("dialog", (dialog) => void dialog.accept());
  await page.click('button[name="interrupt"]');
  await page.locator('[data-status="Canceled"]').waitFor();
  assert.equal((await client.status(task.id)).status, "canceled");
  await page.screenshot({ path: `${ARTIFACTS}/task-canceled.png`, fullPage: true });

  await page.click('nav a[data-view="history"]');
  const row = page.locator(`tr[data-task="${task.id}"]`);
  await row.waitFor();
  assert.equal(await row.locator("[data-status]").textContent(), "Canceled");
  assert.equal(await row.locator("td").nth(3).textContent(), "Long report");
  await page.close();
});

test("a task page for no such task says so and stops asking", async () => {
  const page = await open("/#/task/999999");
  await page.locator(".notice", { hasText: exactly("task 999999 not found") }).waitFor();
  const requests: string[] = [];
  page.on("request", (r) => void requests.push(r.url()));
  await new Promise((r) => setTimeout(r, 2_500)); // longer than the reconnect pause
  assert.deepEqual(requests.filter((u) => u.includes("WatchTask")), []);
  await page.goto(`${url}/#/task/not-a-number`);
  await page.locator(".notice", { hasText: exactly('task_id: "not-a-number" is not a task id (a positive decimal integer)') }).waitFor();
  await page.close();
});

test("a finished task's page shows its result", async () => {
  const client = h.client();
  const task = await client.dispatch("dash.steps", {}, { title: "Short report" });
  const page = await open(`/#/task/${task.id}`);
  await logLine(page, "step 1").waitFor();
  release();
  await page.locator('[data-status="Completed"]').waitFor();
  const shown = JSON.parse((await page.locator("[data-result]").textContent()) ?? "") as { steps: number };
  assert.ok(shown.steps >= 3);
  assert.deepEqual(shown, (await client.status(task.id)).result);
  await page.close();
});

test("Task history filters by origin: User, System, All", async () => {
  const client = h.client();
  const user = await client.dispatch("dash.finished", {}, { title: "By a person", initiator: "ada" });
  const system = await client.dispatch("dash.finished", {}, { title: "By the system", origin: "system" });
  for (const t of [user, system]) await client.interrupt(t.id); // pending → CANCELED: both in history at once
  const page = await open("/#/history");
  const rows = (id: string) => page.locator(`tr[data-task="${id}"]`);
  await rows(user.id).waitFor();
  await rows(system.id).waitFor();
  assert.equal(await rows(user.id).locator("td").nth(4).textContent(), "ada");
  assert.equal(await rows(system.id).locator("td").nth(4).textContent(), "Scheduler");

  await page.selectOption('select[name="origin"]', { label: "User" });
  await waitFor("the User filter", async () => (await rows(system.id).count()) === 0 && (await rows(user.id).count()) === 1);
  await page.selectOption('select[name="origin"]', { label: "System" });
  await waitFor("the System filter", async () => (await rows(user.id).count()) === 0 && (await rows(system.id).count()) === 1);
  await page.selectOption('select[name="origin"]', { label: "All" });
  await waitFor("All", async () => (await rows(user.id).count()) === 1 && (await rows(system.id).count()) === 1);
  await page.screenshot({ path: `${ARTIFACTS}/history.png`, fullPage: true });
  await page.close();
});

test("Task history pages through more tasks than fit one page", async () => {
  const client = h.client();
  const tasks = await client.dispatchBatch(Array.from({ length: 60 }, (_, i) => ({ type: "dash.paged", title: `paged ${i}` })));
  for (const t of tasks) await client.interrupt(t.id);
  const page = await open("/#/history");
  await page.locator(`tr[data-task="${tasks[59].id}"]`).waitFor(); // newest first
  const ids = () => page.locator("tbody tr[data-task]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-task")));
  const first = await ids();
  assert.equal(first.length, 50);
  await button(page, "Next").click();
  await pageLabel(page, 2).waitFor();
  const second = await ids();
  assert.ok(second.length > 0 && second.every((id) => !first.includes(id)), "page 2 holds other tasks");
  assert.ok(second.includes(tasks[0].id), "the oldest of the 60 is on page 2");
  await button(page, "Previous").click();
  await pageLabel(page, 1).waitFor();
  await page.close();
});

test("Queues and schedules show depth, running against the limit, and paused queues", async () => {
  const client = h.client();
  await client.dispatch("dash.queued", {}, { queue: "reports" });
  await h.rpc().pauseQueue({ queue: "reports" });
  const page = await open("/#/queues");
  const row = page.locator('tr[data-queue="reports"]');
  await row.waitFor();
  const cells = await row.locator("td").allInnerTexts();
  assert.deepEqual(cells, ["reports", "1", "0 / 2", "—", "Paused", "Resume"]);
  const schedule = await page.locator('tr[data-schedule="nightly-cleanup"] td').allInnerTexts();
  assert.deepEqual(schedule.slice(0, 5), ["nightly-cleanup", "0 3 * * *", "Europe/Berlin", "dash.cleanup", "scheduled"]);
  assert.match(schedule[5], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/); // the next run
  assert.equal(schedule[6], "—"); // no run yet
  await page.screenshot({ path: `${ARTIFACTS}/queues.png`, fullPage: true });
  await h.rpc().resumeQueue({ queue: "reports" });
  await page.close();
});

test("with auth on, the page asks for a token, refuses a wrong one, and works with the right one", async () => {
  const secured = await h.replica({ authTokens: [{ name: "ops", role: "client", sha256: tokenDigest("s3cret-dashboard-token") }] });
  const page = await browser.newPage();
  await page.goto(secured.server.url);
  await page.locator(".login").waitFor();
  await page.fill('input[name="token"]', "wrong");
  await page.click('button[type="submit"]');
  await page.locator(".login p", { hasText: exactly("The server did not accept that token. Enter another.") }).waitFor();
  await page.fill('input[name="token"]', "s3cret-dashboard-token");
  await page.click('button[type="submit"]');
  await page.locator('section[data-view="active"] table').waitFor();
  assert.equal(await page.locator(".login").count(), 0);
  await page.close();
  await h.stopReplica(secured);
});
