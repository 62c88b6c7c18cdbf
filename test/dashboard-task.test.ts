/**
 * The dashboard's task page in a real browser (headless Chromium, see dashboard-browser.ts): params,
 * why a pending task waits and when it is due, the attempts timeline with each attempt's log under
 * it, Retry with the links both ways, and the log panel that follows its tail unless its reader
 * scrolled up. Screenshots: task-attempts.png, task-waiting.png, task-retried.png, task-log-tail.png.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { RetryableError } from "@taskq/sdk";
import { acceptNextDialog, ARTIFACTS, exactly, launchBrowser, openPage } from "./dashboard-browser.js";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
let browser: Browser;
let url: string;

/** Resolves after `ms`, or at once when `signal` aborts: a handler's pause between log lines. */
const pause = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const wake = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", wake);
      resolve();
    };
    const t = setTimeout(wake, ms);
    signal.addEventListener("abort", wake, { once: true });
  });

before(async () => {
  h = await Harness.create();
  url = (await h.replica({ queues: { default: {}, parked: {} } })).server.url;
  const worker = h.worker({ concurrency: 4, name: "page-worker" });
  // Fails its first attempt, succeeds on its second, logging a line in each.
  worker.register("page.flaky", (ctx) => {
    ctx.log(`attempt ${ctx.attempt} starts`);
    if (ctx.attempt === 1) throw new RetryableError("flaky on purpose");
    ctx.log("all good");
    return { attempt: ctx.attempt };
  });
  worker.register("page.fails", () => {
    throw new Error("always fails");
  });
  // Logs a line every 50 ms until interrupted.
  worker.register("page.chatty", async (ctx) => {
    for (let i = 1; !ctx.signal.aborted; i++) {
      ctx.log(`line ${i}`);
      await pause(50, ctx.signal);
    }
    return null;
  });
  await worker.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await h?.close();
});

const open = (path = "/"): Promise<Page> => openPage(browser, url, path);

/** A fact of the task (a dd with data-field). */
const fact = (page: Page, field: string) => page.locator(`dl.facts dd[data-field="${field}"]`);

test("the attempts timeline shows each attempt, its outcome and error, with its own log under it; params as JSON", async () => {
  const client = h.client();
  const params = { report: "weekly", pages: [1, 2], options: { draft: false } };
  const task = await client.dispatch("page.flaky", params, { title: "Flaky report", maxAttempts: 2, retryDelayMs: 0 });
  await waitFor("it to complete", async () => (await client.status(task.id)).status === "completed");
  const info = await client.status(task.id);

  const page = await open(`/#/task/${task.id}`);
  const first = page.locator('section.attempt[data-attempt="1"]');
  const second = page.locator('section.attempt[data-attempt="2"]');
  await first.locator('[data-outcome="Failed"]').waitFor();
  await second.locator('[data-outcome="Succeeded"]').waitFor();
  assert.equal(await first.locator('[data-field="worker"]').textContent(), "page-worker");
  assert.equal(await first.locator('[data-field="replica"]').textContent(), info.attemptHistory[0].replica);
  assert.match((await first.locator('[data-field="error"]').textContent()) ?? "", /flaky on purpose/);
  assert.match((await second.locator('[data-field="duration"]').textContent()) ?? "", /^\d+ ms$|^\d+\.\d s$/);
  assert.equal(await second.locator('[data-field="error"]').count(), 0);
  // Each attempt's log lines under it, and only its own.
  assert.deepEqual(await first.locator("ol.log li span").allTextContents(), ["attempt 1 starts"]);
  assert.deepEqual(await second.locator("ol.log li span").allTextContents(), ["attempt 2 starts", "all good"]);

  assert.deepEqual(JSON.parse((await page.locator("[data-params]").textContent()) ?? ""), params);
  assert.match((await page.locator("[data-params]").textContent()) ?? "", /\n {2}"report": "weekly",\n/); // pretty
  assert.deepEqual(JSON.parse((await page.locator("[data-result]").textContent()) ?? ""), { attempt: 2 });
  assert.equal(await page.locator('button[name="retry"]').isDisabled(), true); // a completed task is not retried
  assert.equal(await page.locator('button[name="interrupt"]').isDisabled(), true);
  await page.screenshot({ path: `${ARTIFACTS}/task-attempts.png`, fullPage: true });
  await page.close();
});

test("a pending task's page says when it is due and why it waits", async () => {
  const client = h.client();
  await h.rpc().pauseQueue({ queue: "parked" });
  const parked = await client.dispatch("page.flaky", {}, { queue: "parked", title: "Parked", concurrencyKey: "tenant-42" });
  const later = await client.dispatch("page.flaky", {}, { title: "Later", delayMs: 3_600_000 });

  const page = await open(`/#/task/${parked.id}`);
  await fact(page, "waiting").filter({ hasText: exactly('Its queue is paused (queue "parked" is paused)') }).waitFor();
  assert.match((await fact(page, "due").textContent()) ?? "", / \(due now\)$/);
  assert.equal(await fact(page, "concurrency-key").textContent(), "tenant-42");
  await page.getByText("No attempt yet.", { exact: true }).waitFor();
  await page.screenshot({ path: `${ARTIFACTS}/task-waiting.png`, fullPage: true });

  await page.goto(`${url}/#/task/${later.id}`);
  await fact(page, "waiting").filter({ hasText: /^Not due yet \(due at .*\)$/ }).waitFor();
  assert.equal(await fact(page, "concurrency-key").count(), 0, "no key, no line");
  const due = (await client.status(later.id)).nextTryAt!;
  // The due time as the page's clock shows it: local date and time to the second. (No named function in
  // the page's code: the test's compiler would wrap it in a helper the page does not have.)
  const local = await page.evaluate((ms) => {
    const d = new Date(ms);
    const parts = [d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0"));
    return `${d.getFullYear()}-${parts[0]}-${parts[1]} ${parts[2]}:${parts[3]}:${parts[4]}`;
  }, due.getTime());
  assert.equal(await fact(page, "due").textContent(), local);
  await page.close();
  await h.rpc().resumeQueue({ queue: "parked" });
  for (const t of [parked, later]) await t.interrupt();
});

test("Retry (confirmed) runs a failed task again and opens the new one; the two link to each other", async () => {
  const client = h.client();
  const task = await client.dispatch("page.fails", {}, { title: "Doomed", maxAttempts: 1 });
  await waitFor("it to fail", async () => (await client.status(task.id)).status === "failed");
  const page = await open(`/#/task/${task.id}`);
  await page.locator('[data-status="Failed"]').waitFor();
  assert.equal(await page.locator('button[name="interrupt"]').isDisabled(), true);

  const question = acceptNextDialog(page);
  await page.click('button[name="retry"]');
  assert.equal(await question, `Run task ${task.id} (Doomed) again, as a new task?`);
  await page.waitForURL((u) => u.hash.startsWith("#/task/") && u.hash !== `#/task/${task.id}`);
  const retryId = new URL(page.url()).hash.slice("#/task/".length);
  assert.equal((await client.status(retryId)).retryOf, task.id);
  await page.locator('[data-link="retry-of"]', { hasText: exactly(`#${task.id}`) }).waitFor();
  await page.screenshot({ path: `${ARTIFACTS}/task-retried.png`, fullPage: true });

  await page.click('[data-link="retry-of"]');
  await page.locator('[data-link="retried-as"]', { hasText: exactly(`#${retryId}`) }).waitFor();
  await page.close();
});

test("the log panel follows its tail, stays put while its reader is scrolled up, and follows again at the bottom", async () => {
  const client = h.client();
  const task = await client.dispatch("page.chatty", {}, { title: "Chatty" });
  const page = await open(`/#/task/${task.id}`);
  const log = page.locator('section.attempt[data-attempt="1"] ol.log');
  const lines = () => log.locator("li").count();
  const state = () => log.evaluate((el) => ({ top: el.scrollTop, bottom: el.scrollHeight - el.clientHeight, height: el.clientHeight }));
  /** Waits until at least `n` more lines than now have arrived. */
  const moreLines = async (n: number) => {
    const seen = await lines();
    await waitFor(`${n} more log lines`, async () => (await lines()) >= seen + n);
  };

  // The panel keeps its height: once it overflows, it scrolls rather than grow the page.
  await waitFor("the log to overflow its panel", async () => (await state()).bottom > 100);
  const { height } = await state();
  await moreLines(5);
  const following = await state();
  assert.ok(following.bottom - following.top <= 8, `at the bottom: ${JSON.stringify(following)}`);
  assert.equal(following.height, height);
  await page.screenshot({ path: `${ARTIFACTS}/task-log-tail.png`, fullPage: true });

  // Scrolled up: new lines arrive below, and the reader's place stays.
  await log.evaluate((el) => {
    el.scrollTop = 10;
  });
  await moreLines(5);
  assert.equal((await state()).top, 10);

  // Back at the bottom: it follows again.
  await log.evaluate((el) => {
    el.scrollTop = el.scrollHeight;
  });
  await moreLines(5);
  const again = await state();
  assert.ok(again.bottom - again.top <= 8, `following again: ${JSON.stringify(again)}`);
  await task.interrupt();
  await page.close();
});
