/** Queues and schedules: depth, running against the limit, paused; each schedule's next and last run. Every 3 seconds. */
import type { QueueList, ScheduleInfo } from "@taskq/sdk/client";
import { client, describe } from "../api.js";
import { fill, h, statusBadge, table, when } from "../dom.js";
import { every, type View } from "./view.js";

export function queuesView(onAuth: (err: unknown) => boolean): View {
  const notice = h("div");
  const queues = h("div");
  const schedules = h("div");
  const el = h("section", { "data-view": "queues" }, h("h1", {}, "Queues and schedules"), notice, queues, h("h2", {}, "Schedules"), schedules);

  const queueTable = (res: QueueList) =>
    table(
      ["Queue", "Depth", "Running / limit", "State"],
      res.queues.map((q) =>
        h(
          "tr",
          { "data-queue": q.name },
          h("td", {}, q.name),
          h("td", {}, q.pending),
          h("td", {}, `${q.running} / ${q.maxWorkers ?? "∞"}`),
          h("td", {}, q.paused ? h("span", { class: "badge cancelling" }, "Paused") : h("span", { class: "badge completed" }, "Running")),
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
      fill(schedules, scheduleTable(s));
    } catch (err) {
      if (!onAuth(err)) fill(notice, h("div", { class: "notice" }, describe(err)));
    }
  };
  const refresher = every(3_000, load);
  return { el, stop: () => refresher.stop() };
}
