/**
 * Workers: every connected worker session on every replica, from the client's listWorkers, every 3
 * seconds: its name, replica, task types, queues, concurrency and free credits, the tasks it runs (links
 * to their pages) and when its replica last heard from it and confirmed it.
 */
import type { WorkerInfo } from "@taskq/sdk/client";
import { client, describe } from "../api.js";
import { duration, fill, h, table, taskLink, when } from "../dom.js";
import { every, type View } from "./view.js";

export function workersView(onAuth: (err: unknown) => boolean): View {
  const notice = h("div");
  const body = h("div");
  const summary = h("p", { class: "origin" });
  const el = h("section", { "data-view": "workers" }, h("h1", {}, "Workers"), notice, summary, body);

  /** "3 s ago" beside the time, as seen from this browser. */
  const ago = (d: Date | null) => (d ? `${when(d)} (${duration(Math.max(0, Date.now() - d.getTime()))} ago)` : "—");

  const row = (w: WorkerInfo) =>
    h(
      "tr",
      { "data-worker": w.sessionId },
      h("td", {}, w.name || "—"),
      h("td", {}, w.replicaId),
      h("td", { class: "wrap" }, w.taskTypes.join(", ")),
      h("td", { class: "wrap" }, w.queues.length > 0 ? w.queues.join(", ") : "all"),
      h("td", {}, `${w.concurrency} / ${w.credits} free`),
      h("td", { class: "wrap" }, w.running === 0 ? "—" : h("span", { class: "running-tasks" }, `${w.running}: `, ...w.runningTaskIds.flatMap((id, i) => [i > 0 && " ", taskLink(id)]))),
      h("td", {}, when(w.connectedAt)),
      h("td", {}, ago(w.heartbeatAt)),
      h("td", {}, ago(w.lastHeardAt)),
    );

  const load = async () => {
    try {
      const workers = await client.listWorkers();
      fill(notice);
      const running = workers.reduce((n, w) => n + w.running, 0);
      fill(summary, `${workers.length} connected ${workers.length === 1 ? "worker" : "workers"}, running ${running} ${running === 1 ? "task" : "tasks"}.`);
      fill(
        body,
        table(
          ["Name", "Replica", "Task types", "Queues", "Concurrency / credits", "Running", "Connected", "Last heartbeat", "Last heard"],
          workers.map(row),
          "No worker is connected.",
        ),
      );
    } catch (err) {
      if (!onAuth(err)) fill(notice, h("div", { class: "notice" }, describe(err)));
    }
  };
  const refresher = every(3_000, load);
  return { el, stop: () => refresher.stop() };
}
