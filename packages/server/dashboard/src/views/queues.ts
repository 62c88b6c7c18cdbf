/**
 * Queues and schedules: the activity charts of the last hour (activity-charts.ts); each queue's depth,
 * running against its limit, its key and rate limits (with the queue bucket's free tokens and the due
 * tasks each kind of limit holds back now), and whether it is paused, with Pause / Resume (the client's
 * pauseQueue and resumeQueue, which need an admin token when the server has auth); the keys of each
 * queue with keyed tasks (the ones listQueues lists: at most 100 a queue, most running first); each
 * schedule's next and last run. Queues and schedules come from listQueues and listSchedules every 3 seconds.
 */
import type { QueueInfo, QueueList, RateLimitInfo, ScheduleInfo } from "@taskq/sdk/client";
import { actionFailed, client, describe } from "../api.js";
import { fill, h, statusBadge, table, when } from "../dom.js";
import { activityCharts } from "./activity-charts.js";
import { every, type View } from "./view.js";

/** A period for people: 3_600_000 → "h", 300_000 → "5 min", 1_500 → "1500 ms". */
const period = (ms: number): string => {
  const units: [number, string][] = [
    [3_600_000, "h"],
    [60_000, "min"],
    [1_000, "s"],
  ];
  const [size, unit] = units.find(([size]) => ms % size === 0) ?? [1, "ms"];
  return ms === size ? unit : `${ms / size} ${unit}`;
};

const rate = (r: RateLimitInfo) => `${r.tasks} per ${period(r.perMs)}, burst ${r.burst}`;

/** Free tokens, rounded to one decimal (a bucket refills continuously). */
const tokens = (n: number) => n.toFixed(1);

/** One line of a queue's Limits cell: a muted name, then the value (data-field: what tests look for). */
const limitLine = (name: string, field: string, ...value: (Node | string)[]) =>
  h("div", {}, h("span", { class: "origin" }, `${name} `), h("span", { "data-field": field }, ...value));

/** What limits a queue beyond max_workers (shown beside it), and the due tasks held back now. */
function limitsCell(q: QueueInfo): HTMLTableCellElement {
  const lines: HTMLElement[] = [];
  if (q.maxRunningPerKey !== null) lines.push(limitLine("per key", "max-running-per-key", `at most ${q.maxRunningPerKey} running`));
  if (q.rateLimit) lines.push(limitLine("rate", "rate-limit", `${rate(q.rateLimit)} · `, h("span", { "data-field": "rate-tokens" }, tokens(q.rateLimit.tokens)), " tokens free"));
  if (q.rateLimitPerKey) lines.push(limitLine("rate per key", "rate-limit-per-key", rate(q.rateLimitPerKey)));
  const weights = Object.entries(q.keyWeights);
  if (weights.length > 0) lines.push(limitLine("weights", "key-weights", weights.map(([key, w]) => `${key} ×${w}`).join(", ")));
  if (q.urgentPriority !== null) lines.push(limitLine("urgent", "urgent-priority", `priority ≥ ${q.urgentPriority}`));
  if (q.heldByKeyLimit > 0) lines.push(h("div", { class: "held", "data-field": "held-by-key-limit" }, `${q.heldByKeyLimit} held by key limit`));
  if (q.heldByRateLimit > 0) lines.push(h("div", { class: "held", "data-field": "held-by-rate-limit" }, `${q.heldByRateLimit} held by rate limit`));
  return h("td", { class: "limits" }, ...(lines.length > 0 ? lines : ["—"]));
}

/** The rows of one queue's listed keys, and a last row counting the keys not listed. */
function keyRows(q: QueueInfo): HTMLTableRowElement[] {
  const rows = q.keys.map((k) =>
    h(
      "tr",
      { "data-queue": q.name, "data-key": k.key },
      h("td", {}, q.name),
      h("td", { "data-field": "key" }, k.key),
      h("td", { "data-field": "running" }, q.maxRunningPerKey === null ? k.running : `${k.running} / ${q.maxRunningPerKey}`),
      h("td", { "data-field": "pending" }, k.pending),
      h("td", { "data-field": "tokens" }, q.rateLimitPerKey && k.tokens !== null ? tokens(k.tokens) : "—"),
    ),
  );
  const more = q.keyCount - q.keys.length;
  if (more > 0) rows.push(h("tr", { "data-queue": q.name }, h("td", { class: "origin", colspan: 5, "data-field": "more-keys" }, `${q.name}: ${more} more ${more === 1 ? "key" : "keys"}`)));
  return rows;
}

const keyTable = (res: QueueList) => table(["Queue", "Key", "Running", "Pending", "Tokens"], res.queues.flatMap(keyRows), "No queue has tasks with a concurrency key now.");

export function queuesView(onAuth: (err: unknown) => boolean): View {
  const notice = h("div");
  const actionNotice = h("div");
  const queues = h("div", { "data-table": "queues" });
  const keys = h("div", { "data-table": "keys" });
  const schedules = h("div");
  const charts = activityCharts();
  const el = h(
    "section",
    { "data-view": "queues" },
    h("h1", {}, "Queues and schedules"),
    notice,
    h("h2", {}, "Queues"),
    actionNotice,
    queues,
    h("h2", {}, "Keys"),
    keys,
    h("h2", {}, "Schedules"),
    schedules,
    h("h2", {}, "Activity"),
    charts.el,
  );

  const toggle = async (q: QueueInfo) => {
    const action = `${q.paused ? "Resuming" : "Pausing"} queue ${q.name}`;
    try {
      await (q.paused ? client.resumeQueue(q.name) : client.pauseQueue(q.name));
      fill(actionNotice);
      await refresher.now();
    } catch (err) {
      actionFailed(action, err, onAuth, (message) => fill(actionNotice, h("div", { class: "notice", role: "alert" }, message)));
    }
  };

  const queueTable = (res: QueueList) =>
    table(
      ["Queue", "Depth", "Running / limit", "Limits", "State", ""],
      res.queues.map((q) =>
        h(
          "tr",
          { "data-queue": q.name },
          h("td", {}, q.name),
          h("td", {}, q.pending),
          h("td", {}, `${q.running} / ${q.maxWorkers ?? "∞"}`),
          limitsCell(q),
          h("td", {}, q.paused ? h("span", { class: "badge cancelling" }, "Paused") : h("span", { class: "badge completed" }, "Running")),
          h("td", {}, h("button", { name: q.paused ? "resume" : "pause", onclick: () => void toggle(q) }, q.paused ? "Resume" : "Pause")),
        ),
      ),
      "No queues.",
    );

  const scheduleTable = (schedules: ScheduleInfo[]) =>
    table(
      ["Schedule", "Cron", "Time zone", "Type", "Queue", "Next run", "Last run", "Last status"],
      schedules.map((s) =>
        h(
          "tr",
          { "data-schedule": s.name, class: s.lastTaskId ? "link" : undefined, onclick: s.lastTaskId ? () => (location.hash = `#/task/${s.lastTaskId}`) : undefined },
          h("td", {}, s.name),
          h("td", {}, h("code", {}, s.cron)),
          h("td", {}, s.timeZone),
          h("td", {}, s.type),
          h("td", {}, s.queue),
          h("td", {}, when(s.nextRunAt)),
          h("td", {}, when(s.lastRunAt)),
          h("td", {}, s.lastStatus === null ? "—" : statusBadge(s.lastStatus)),
        ),
      ),
      "No schedules.",
    );

  const load = async () => {
    try {
      const [q, s] = await Promise.all([client.listQueues(), client.listSchedules()]);
      fill(notice);
      const global = q.globalMaxWorkers === null ? "" : ` · all queues: ${q.running} running of at most ${q.globalMaxWorkers}`;
      fill(queues, queueTable(q), global && h("p", { class: "origin" }, global));
      // The keys scroll in their box (style.css): a refresh keeps where the reader scrolled to.
      const scrolled = keys.firstElementChild?.scrollTop ?? 0;
      fill(keys, keyTable(q));
      if (keys.firstElementChild) keys.firstElementChild.scrollTop = scrolled;
      fill(schedules, scheduleTable(s));
      charts.setQueues(q.queues.map((x) => x.name));
    } catch (err) {
      if (!onAuth(err)) fill(notice, h("div", { class: "notice" }, describe(err)));
    }
  };
  const refresher = every(3_000, load);
  return {
    el,
    stop: () => {
      refresher.stop();
      charts.stop();
    },
  };
}
