/**
 * Task details: the facts (task-facts.ts), Interrupt and Retry, status values, the result or error, the
 * attempts timeline with each attempt's log following its tail (task-attempts.ts), and the params.
 * Two sources: the client's watch (a snapshot, then each log step, status value and status as it
 * happens) and its status() every 2 seconds and after each status change (the attempts, why a pending
 * task waits, and the retry links, which a watch does not carry). The client resumes a broken watch by
 * itself; when it gives up, the page says so and watches again after the last step shown.
 */
import { isFinalStatus, type TaskInfo, type WatchEvent } from "@taskq/sdk/client";
import { actionFailed, client, describe, isFinal } from "../api.js";
import { fill, h } from "../dom.js";
import { attemptsTimeline } from "./task-attempts.js";
import { factsList, outcomeCard, paramsCard, statusValuesCard } from "./task-facts.js";
import { every, type View } from "./view.js";

const RESUME_AFTER_MS = 2_000;
const STATUS_EVERY_MS = 2_000;

export function taskView(id: string, onAuth: (err: unknown) => boolean): View {
  const abort = new AbortController();
  let task: TaskInfo | null = null;
  /** The watch's trouble (reconnecting), cleared by its next event; and what an action ran into, kept. */
  const connection = h("div");
  const notice = h("div");
  const facts = h("div", { class: "card" }, "Loading…");
  const values = h("div");
  const outcome = h("div");
  const params = h("div");
  const attempts = attemptsTimeline();
  const el = h(
    "section",
    { "data-view": "task" },
    h("a", { class: "back", href: "javascript:history.back()" }, "← Back"),
    h("h1", {}, `Task ${id}`),
    connection,
    notice,
    facts,
    values,
    outcome,
    attempts.el,
    params,
  );
  const say = (message: string) => fill(notice, h("div", { class: "notice" }, message));

  const interrupt = async () => {
    if (!task || !confirm(`Interrupt task ${id} (${task.displayTitle})?`)) return;
    try {
      await client.interrupt(id, "interrupted from the dashboard");
    } catch (err) {
      actionFailed(`Interrupting task ${id}`, err, onAuth, say);
    }
  };

  const retry = async () => {
    if (!task || !confirm(`Run task ${id} (${task.displayTitle}) again, as a new task?`)) return;
    try {
      const again = await client.retry(id);
      location.hash = `#/task/${again.id}`;
    } catch (err) {
      actionFailed(`Retrying task ${id}`, err, onAuth, say);
    }
  };

  const render = () => {
    if (!task) return;
    const t = task;
    const canInterrupt = t.status === "pending" || t.status === "running";
    const canRetry = t.status === "failed" || t.status === "canceled" || t.status === "stuck";
    fill(
      facts,
      factsList(t),
      h(
        "div",
        { class: "actions" },
        h("button", { class: "danger", name: "interrupt", disabled: !canInterrupt, onclick: () => void interrupt() }, "Interrupt"),
        h("button", { name: "retry", disabled: !canRetry, onclick: () => void retry() }, "Retry"),
      ),
    );
    fill(values, statusValuesCard(t));
    fill(outcome, outcomeCard(t));
    if (params.childElementCount === 0) fill(params, paramsCard(t));
  };

  /** Ends the page's asking for good when the task cannot be shown (no such task, or not a task id). */
  const gone = (err: unknown) => {
    refresher.stop();
    abort.abort();
    fill(connection);
    fill(facts, h("div", { class: "notice" }, describe(err)));
  };

  const refresher = every(STATUS_EVERY_MS, async () => {
    try {
      const latest = await client.status(id);
      if (abort.signal.aborted) return;
      // The log is the watch's to show; status() repeats it whole.
      task = { ...latest, log: [] };
      attempts.setAttempts(latest.attemptHistory);
      render();
    } catch (err) {
      if (abort.signal.aborted || onAuth(err)) return;
      if (isFinal(err)) gone(err);
    }
  });

  const apply = (e: WatchEvent) => {
    if (e.type === "snapshot") {
      task ??= e.task;
      for (const step of e.task.log) attempts.addLog(step);
    } else if (e.type === "log") attempts.addLog(e.step);
    else if (task && e.type === "status_value") task.statusValues = { ...task.statusValues, [e.key]: e.value };
    else if (task && e.type === "status") {
      Object.assign(task, { status: e.status, attempts: e.attempts, worker: e.worker, error: e.error, result: e.result, waiting: null });
      if (isFinalStatus(e.status)) task.finishedAt = e.time;
      if (e.status === "running" && e.time) task.startedAt = e.time;
      void refresher.now(); // for the attempt that began or ended
    }
  };

  const follow = async () => {
    while (!abort.signal.aborted) {
      try {
        for await (const e of client.watch(id, { afterSeq: attempts.lastSeq(), signal: abort.signal })) {
          apply(e);
          fill(connection);
          render();
        }
        return; // the task reached a final status, or the view was left
      } catch (err) {
        if (abort.signal.aborted || onAuth(err)) return;
        if (isFinal(err)) return gone(err);
        fill(connection, h("div", { class: "notice" }, `${describe(err)} (reconnecting)`));
        await new Promise((r) => setTimeout(r, RESUME_AFTER_MS));
      }
    }
  };
  void follow();
  document.title = `taskq · task ${id}`;
  return {
    el,
    stop: () => {
      refresher.stop();
      abort.abort();
    },
  };
}
