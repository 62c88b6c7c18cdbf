/**
 * Queues and schedules: the activity charts of the last hour (activity-charts.ts); each queue's depth,
 * running against its limit, and whether it is paused, with Pause / Resume (the client's pauseQueue and
 * resumeQueue, which need an admin token when the server has auth); each schedule's next and last run.
 * Queues and schedules come from listQueues and listSchedules every 3 seconds.
 */
import type { QueueInfo, QueueList, ScheduleInfo } from "@taskq/sdk/client";
import { actionFailed, client, describe } from "../api.js";
import { fill, h, statusBadge, table, when } from "../dom.js";
import { activityCharts } from "./activity-charts.js";
import { every, type View } from "./view.js";

export function queuesView(onAuth: (err: unknown) => boolean): View {
  const notice = h("div");
  const actionNotice = h("div");
  const queues = h("div");
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
      ["Queue", "Depth", "Running / limit", "State", ""],
      res.queues.map((q) =>
        h(
          "tr",
          { "data-queue": q.name },
          h("td", {}, q.name),
          h("td", {}, q.pending),
          h("td", {}, `${q.running} / ${q.maxWorkers ?? "∞"}`),
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
