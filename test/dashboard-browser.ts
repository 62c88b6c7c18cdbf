/**
 * What the dashboard's browser tests share (test/dashboard*.test.ts): headless Debian Chromium through
 * playwright-core, where screenshots go, and locators that match text whole.
 *
 * Needs /usr/bin/chromium (Debian's chromium package; .ci/run installs it), or CHROMIUM_PATH.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Where screenshots go (ignored by git), one per view or state, named after it. */
export const ARTIFACTS = "test-artifacts/dashboard";
/** Chromium flags for this machine: no sandbox as root, and none of the background traffic a closed network refuses. */
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export async function launchBrowser(): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium) or set CHROMIUM_PATH`);
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

/** A new page (its own context: no token kept from another) at `url` + `path`; an error on the page fails the test. */
export async function openPage(browser: Browser, url: string, path = "/", opts: { width?: number; height?: number } = {}): Promise<Page> {
  const page = await browser.newPage(opts.width ? { viewport: { width: opts.width, height: opts.height ?? 900 } } : {});
  page.on("pageerror", (err) => assert.fail(`page error: ${err.message}`));
  await page.goto(`${url}${path}`);
  return page;
}

/**
 * Text on the page is matched whole, never as a substring: "step 1" must not also find "step 10" (a
 * strict-mode violation once both are there), nor "Page 1" a "Page 10".
 */
export const exactly = (text: string) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);

/** A button by its whole label. */
export const button = (page: Page, label: string) => page.getByRole("button", { name: label, exact: true });

/** Accepts the next confirm() the page shows, keeping its message for the test to check. */
export function acceptNextDialog(page: Page): Promise<string> {
  return new Promise((resolve) => {
    page.once("dialog", (dialog) => {
      resolve(dialog.message());
      void dialog.accept();
    });
  });
}
