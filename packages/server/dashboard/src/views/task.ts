/**
 * Task details: who and what, a timeline of log steps arriving live, status values (a progress bar for
 * "progress"), the result or error, and Interrupt (after a confirmation) while the task is active.
 * Everything comes from one WatchTask stream: a snapshot, then each change; if the stream breaks, it
 * resumes after the last step shown.
 */
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { TaskStatus, type LogEntry, type Task } from "@taskq/protocol";
import { api, describe } from "../api.js";
import { fill, h, isActive, statusBadge, when } from "../dom.js";
import type { View } from "./view.js";

const RESUME_AFTER_MS = 2_000;

export function taskView(id: string, onAuth: (err: unknown) => boolean): View {
  const abort = new AbortController();
  let task: Task | null = null;
  let result: JsonValue | undefined;
  const log: LogEntry[] = [];
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
      await api.interrupt({ taskId: id, reason: "interrupted from the dashboard" });
    } catch (err) {
      if (!onAuth(err)) fill(notice, h("div", { class: "notice" }, describe(err)));
    }
  };

  const render = () => {
    if (!task) return;
    const t = task;
    const fact = (label: string, value: Node | string | number) => [h("dt", {}, label), h("dd", {}, value)];
    const canInterrupt = t.status === TaskStatus.PENDING || t.status === TaskStatus.RUNNING;
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
    const entries = Object.entries(t.statusValues ?? {});
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
      t.status === TaskStatus.COMPLETED && h("div", { class: "card" }, h("h2", {}, "Result"), h("pre", { "data-result": "" }, JSON.stringify(result ?? null, null, 2))),
      t.error && h("div", { class: "card" }, h("h2", {}, "Error"), h("pre", { class: "error-text" }, t.error)),
    );
  };

  const addLog = (entry: LogEntry) => {
    log.push(entry);
    timeline.append(
      h("li", {}, h("time", {}, when(entry.time).slice(11)), h("span", { class: "attempt", title: "attempt" }, `#${entry.attempt}`), h("span", {}, entry.message)),
    );
  };

  const follow = async () => {
    while (!abort.signal.aborted) {
      try {
        const afterSeq = log.at(-1)?.seq ?? 0n;
        for await (const res of api.watchTask({ taskId: id, afterSeq }, { signal: abort.signal })) {
          const e = res.event;
          if (e.case === "snapshot") {
            task = e.value;
            result = valueJson(e.value.result);
            e.value.log.forEach(addLog);
          } else if (e.case === "logEntry") addLog(e.value);
          else if (task && e.case === "statusValue") task.statusValues = { ...task.statusValues, [e.value.key]: valueJson(e.value.value) ?? null };
          else if (task && e.case === "statusChange") {
            const c = e.value;
            Object.assign(task, { status: c.status, attempts: c.attempts, worker: c.worker, error: c.error });
            if (!isActive(c.status)) task.finishedAt = c.time;
            if (c.status === TaskStatus.RUNNING && c.time) task.startedAt = c.time;
            result = valueJson(c.result);
          }
          fill(notice);
          render();
        }
        return; // the task reached a final status
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

/** An error that trying again cannot mend: no such task, or not a task id. */
const isFinal = (err: unknown) => err instanceof ConnectError && (err.code === Code.NotFound || err.code === Code.InvalidArgument);

const valueJson = (v: Value | undefined): JsonValue | undefined => (v ? toJson(ValueSchema, v) : undefined);

function statusValue(key: string, value: unknown): Node | string {
  if (key === "progress" && typeof value === "number") {
    const pct = Math.max(0, Math.min(100, value));
    return h("span", {}, h("span", { class: "progress", role: "progressbar", "aria-valuenow": pct }, h("div", { style: `width: ${pct}%` })), ` ${pct}%`);
  }
  return typeof value === "string" ? value : JSON.stringify(value);
}

