/**
 * A task's attempts timeline: each attempt (its number, worker, server replica, start, end, duration,
 * outcome and error; from the client's status(), whose attemptHistory lists them) with the log steps
 * of that attempt under it (from the client's watch, each step naming its attempt). Each attempt's log
 * is a panel that follows its tail (tail.ts), so a chatty task does not grow the page. Attempts are
 * made once and then updated in place, so a reader's scrolling in a log survives every refresh.
 */
import type { AttemptInfo, AttemptOutcomeName, LogStep } from "@taskq/sdk/client";
import { duration, fill, h, label, when } from "../dom.js";
import { appendFollowing } from "../tail.js";

/** The badge colour (a status's class in style.css) of each outcome. */
const OUTCOME_CLASS: Record<AttemptOutcomeName, string> = {
  running: "running",
  succeeded: "completed",
  failed: "failed",
  timed_out: "failed",
  lost: "stuck",
  canceled: "canceled",
  given_back: "pending",
  snoozed: "pending",
  unspecified: "pending",
};

interface AttemptBlock {
  el: HTMLElement;
  head: HTMLElement;
  log: HTMLOListElement;
}

export interface AttemptsTimeline {
  el: HTMLElement;
  /** Shows the attempts as status() last told them. */
  setAttempts(attempts: AttemptInfo[]): void;
  /** Adds a log step under its attempt. */
  addLog(step: LogStep): void;
  /** The seq of the last log step added, 0 before any (a watch resumes after it). */
  lastSeq(): number;
}

export function attemptsTimeline(): AttemptsTimeline {
  const blocks = new Map<number, AttemptBlock>();
  const list = h("div", { class: "attempts" });
  const none = h("p", { class: "origin" }, "No attempt yet.");
  const el = h("div", { class: "card" }, h("h2", {}, "Attempts"), none, list);
  let seq = 0;

  /** The block of attempt `n`, made (in attempt order) the first time it is asked for. */
  const block = (n: number): AttemptBlock => {
    let b = blocks.get(n);
    if (b) return b;
    const head = h("div", { class: "attempt-head" }, h("strong", {}, `Attempt ${n}`));
    const log = h("ol", { class: "timeline log", "aria-label": `log of attempt ${n}` });
    b = { el: h("section", { class: "attempt", "data-attempt": n }, head, log), head, log };
    const later = [...blocks.entries()].filter(([k]) => k > n).sort(([a], [c]) => a - c)[0];
    list.insertBefore(b.el, later ? later[1].el : null);
    blocks.set(n, b);
    none.remove();
    return b;
  };

  const setAttempts = (attempts: AttemptInfo[]) => {
    for (const a of attempts) fill(block(a.number).head, ...attemptHead(a));
  };

  const addLog = (step: LogStep) => {
    if (step.seq <= seq) return; // already shown (a resumed watch may repeat a step)
    seq = step.seq;
    const line = h("li", {}, h("time", {}, when(step.time).slice(11)), h("span", {}, step.message));
    appendFollowing(block(step.attempt).log, line);
  };

  return { el, setAttempts, addLog, lastSeq: () => seq };
}

/** An attempt's header: number and outcome, then its facts, then its error. */
function attemptHead(a: AttemptInfo): Node[] {
  const end = a.endedAt ?? new Date();
  const fact = (name: string, value: string) => h("span", { class: "fact" }, h("span", { class: "origin" }, `${name} `), h("span", { "data-field": name.toLowerCase() }, value));
  const head: Node[] = [
    h("strong", {}, `Attempt ${a.number}`),
    h("span", { class: `badge ${OUTCOME_CLASS[a.outcome]}`, "data-outcome": label(a.outcome) }, label(a.outcome)),
    fact("Worker", a.worker || "—"),
    fact("Replica", a.replica || "—"),
    fact("Started", when(a.startedAt)),
    fact("Ended", when(a.endedAt)),
    fact("Duration", `${duration(end.getTime() - a.startedAt.getTime())}${a.endedAt ? "" : " so far"}`),
  ];
  if (a.error) head.push(h("pre", { class: "error-text", "data-field": "error" }, a.error));
  return head;
}
