/**
 * Task details: who and what, a timeline of log steps arriving live, status values (a progress bar for
 * "progress"), the result or error, and Interrupt (after a confirmation) while the task is active.
 * Everything comes from the client's watch: a snapshot, then each change. The client resumes a broken
 * stream by itself; when it gives up, the page says so and watches again after the last step shown.
 */
import { isFinalStatus, type LogStep, type TaskInfo, type WatchEvent } from "@taskq/sdk/client";
import { client, describe, isFinal } from "../api.js";
import { fill, h, statusBadge, when } from "../dom.js";
import type { View } from "./view.js";

const RESUME_AFTER_MS = 2_000;

export function taskView(id: string, onAuth: (err: unknown) => boolean): View {
  const abort = new AbortController();
  let task: TaskInfo | null = null;
  const log: LogStep[] = [];
  const notice = h("div");
  const facts = h("div", { class: "card" }, "Loading…");
  const values = h("div");
  const outcome = h("div");
  const timeline = h("ol", { class: "timeline" });
  const el = h(
    "section",
    { "data-view": "task" },
    h("a", { class: "back", href: "javascript:history.back()" }, "← Back"),
    h("h1", {}, `Task ${id}`),
    notice,
    facts,
    values,
    outcome,
    h("div", { class: "card" }, h("h2", {}, "Timeline"), timeline),
  );

  const interrupt = async () => {
    if (!task || !confirm(`Interrupt task ${id} (${task.displayTitle})?`)) return;
    try {
      await client.interrupt(id, "interrupted from the dashboard");
    } catch (err) {
      if (!onAuth(err)) fill(notice, h("div", { class: "notice" }, describe(err)));
    }
  };

  const render = () => {
    if (!task) return;
    const t = task;
    const fact = (label: string, value: Node | string | number) => [h("dt", {}, label), h("dd", {}, value)];
    const canInterrupt = t.status === "pending" || t.status === "running";
    fill(
      facts,
      h(
        "dl",
        { class: "facts" },
        ...fact("ID", t.id),
        ...fact("Title", t.displayTitle),
        ...fact("Status", statusBadge(t.status)),
        ...fact("Initiator", t.displayInitiator),
        ...(t.nodeId ? fact("Node", t.nodeId) : []),
        ...fact("Attempts", `${t.attempts} of ${t.maxAttempts}`),
        ...fact("Worker", t.worker || "—"),
        ...fact("Type", t.type),
        ...fact("Queue", t.queue),
        ...fact("Created", when(t.createdAt)),
        ...fact("Started", when(t.startedAt)),
        ...fact("Finished", when(t.finishedAt)),
      ),
      canInterrupt && h("div", { class: "actions" }, h("button", { class: "danger", name: "interrupt", onclick: () => void interrupt() }, "Interrupt")),
    );
    const entries = Object.entries(t.statusValues);
    fill(
      values,
      entries.length > 0 &&
        h(
          "div",
          { class: "card" },
          h("h2", {}, "Status"),
          h("dl", { class: "facts" }, ...entries.flatMap(([key, value]) => [h("dt", {}, key), h("dd", { "data-key": key }, statusValue(key, value))])),
        ),
    );
    fill(
      outcome,
      t.status === "completed" && h("div", { class: "card" }, h("h2", {}, "Result"), h("pre", { "data-result": "" }, JSON.stringify(t.result ?? null, null, 2))),
      t.error && h("div", { class: "card" }, h("h2", {}, "Error"), h("pre", { class: "error-text" }, t.error)),
    );
  };

  const addLog = (entry: LogStep) => {
    log.push(entry);
    timeline.append(
      h("li", {}, h("time", {}, when(entry.time).slice(11)), h("span", { class: "attempt", title: "attempt" }, `#${entry.attempt}`), h("span", {}, entry.message)),
    );
  };

  const apply = (e: WatchEvent) => {
    if (e.type === "snapshot") {
      task = e.task;
      e.task.log.forEach(addLog);
    } else if (e.type === "log") addLog(e.step);
    else if (task && e.type === "status_value") task.statusValues = { ...task.statusValues, [e.key]: e.value };
    else if (task && e.type === "status") {
      Object.assign(task, { status: e.status, attempts: e.attempts, worker: e.worker, error: e.error, result: e.result });
      if (isFinalStatus(e.status)) task.finishedAt = e.time;
      if (e.status === "running" && e.time) task.startedAt = e.time;
    }
  };

  const follow = async () => {
    while (!abort.signal.aborted) {
      try {
        for await (const e of client.watch(id, { afterSeq: log.at(-1)?.seq ?? 0, signal: abort.signal })) {
          apply(e);
          fill(notice);
          render();
        }
        return; // the task reached a final status, or the view was left
      } catch (err) {
        if (abort.signal.aborted || onAuth(err)) return;
        if (isFinal(err)) {
          fill(facts, h("div", { class: "notice" }, describe(err)));
          return;
        }
        fill(notice, h("div", { class: "notice" }, `${describe(err)} (reconnecting)`));
        await new Promise((r) => setTimeout(r, RESUME_AFTER_MS));
      }
    }
  };
  void follow();
  document.title = `taskq · task ${id}`;
  return { el, stop: () => abort.abort() };
}

function statusValue(key: string, value: unknown): Node | string {
  if (key === "progress" && typeof value === "number") {
    const pct = Math.max(0, Math.min(100, value));
    return h("span", {}, h("span", { class: "progress", role: "progressbar", "aria-valuenow": pct }, h("div", { style: `width: ${pct}%` })), ` ${pct}%`);
  }
  return typeof value === "string" ? value : JSON.stringify(value);
}

