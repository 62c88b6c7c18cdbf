/**
 * What the task page says about a task, drawn from one TaskInfo (the client's status(), patched by its
 * watch): the facts (who, what, where, when; for a pending task when it is due and why it waits; the
 * retry links both ways), its params as JSON, its status values (a progress bar for "progress"), and
 * its result or error. Plain functions of the task: the page redraws them on every change.
 */
import type { TaskInfo, WaitReasonName } from "@taskq/sdk/client";
import { h, statusBadge, taskLink, when } from "../dom.js";

/** Why a pending task waits, in words; the server's detail (naming the queue, limit or time) follows. */
const WAIT_REASON: Record<WaitReasonName, string> = {
  not_due: "Not due yet",
  queue_paused: "Its queue is paused",
  no_worker: "No connected worker runs it",
  queue_limit: "Its queue runs as many as it may",
  key_limit: "Its key runs as many as it may",
  global_limit: "All queues run as many as they may",
  rate_limit: "A rate limit has no token free",
  workers_busy: "Its workers are busy",
};

const fact = (name: string, value: Node | string | number, field?: string) => [h("dt", {}, name), h("dd", { "data-field": field }, value)];

export function factsList(t: TaskInfo): HTMLElement {
  return h(
    "dl",
    { class: "facts" },
    ...fact("ID", t.id),
    ...fact("Title", t.displayTitle),
    ...fact("Status", statusBadge(t.status)),
    ...(t.waiting ? fact("Waiting", `${WAIT_REASON[t.waiting.reason]}${t.waiting.detail ? ` (${t.waiting.detail})` : ""}`, "waiting") : []),
    ...(t.status === "pending" ? fact("Due", dueText(t.nextTryAt), "due") : []),
    ...(t.retryOf ? fact("Retry of", taskLink(t.retryOf, { "data-link": "retry-of" })) : []),
    ...(t.retriedAs ? fact("Retried as", taskLink(t.retriedAs, { "data-link": "retried-as" })) : []),
    ...fact("Initiator", t.displayInitiator),
    ...(t.nodeId ? fact("Node", t.nodeId) : []),
    ...fact("Attempts", `${t.attempts} of ${t.maxAttempts}`),
    ...fact("Worker", t.worker || "—"),
    ...fact("Type", t.type),
    ...fact("Queue", t.queue),
    ...(t.concurrencyKey ? fact("Concurrency key", t.concurrencyKey, "concurrency-key") : []),
    ...fact("Created", when(t.createdAt)),
    ...fact("Started", when(t.startedAt)),
    ...fact("Finished", when(t.finishedAt)),
  );
}

/** When a pending task may run: its next_try_at, said to be past when it is. */
const dueText = (at: Date | null) => (at ? `${when(at)}${at.getTime() <= Date.now() ? " (due now)" : ""}` : "now");

export const paramsCard = (t: TaskInfo) => h("div", { class: "card" }, h("h2", {}, "Params"), h("pre", { "data-params": "" }, JSON.stringify(t.params, null, 2)));

/** The status values the handler set, or nothing when it set none. */
export function statusValuesCard(t: TaskInfo): HTMLElement | null {
  const entries = Object.entries(t.statusValues);
  if (entries.length === 0) return null;
  return h(
    "div",
    { class: "card" },
    h("h2", {}, "Status"),
    h("dl", { class: "facts" }, ...entries.flatMap(([key, value]) => [h("dt", {}, key), h("dd", { "data-key": key }, statusValue(key, value))])),
  );
}

/** The result of a completed task, or the error of one that failed, was canceled or is stuck. */
export function outcomeCard(t: TaskInfo): HTMLElement | null {
  if (t.status === "completed") return h("div", { class: "card" }, h("h2", {}, "Result"), h("pre", { "data-result": "" }, JSON.stringify(t.result ?? null, null, 2)));
  if (t.error) return h("div", { class: "card" }, h("h2", {}, "Error"), h("pre", { class: "error-text", "data-error": "" }, t.error));
  return null;
}

function statusValue(key: string, value: unknown): Node | string {
  if (key === "progress" && typeof value === "number") {
    const pct = Math.max(0, Math.min(100, value));
    return h("span", {}, h("span", { class: "progress", role: "progressbar", "aria-valuenow": pct }, h("div", { style: `width: ${pct}%` })), ` ${pct}%`);
  }
  return typeof value === "string" ? value : JSON.stringify(value);
}
