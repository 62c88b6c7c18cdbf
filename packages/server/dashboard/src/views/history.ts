/**
 * Task history: running and finished tasks, newest first, from the client's listHistory, refreshed every
 * 3 seconds, under status tabs with counts (countTasks). Filter by origin (User, System, All), type
 * (prefix) and queue; pages of 50; select rows to interrupt or retry them together (bulk-select.ts).
 */
import type { ListHistoryOptions, TaskInfo, TaskOrigin, TaskStatusName } from "@taskq/sdk/client";
import { client, describe } from "../api.js";
import { fill, h, statusBadge, table, when } from "../dom.js";
import { bulkSelect } from "./bulk-select.js";
import { queueFilter, typePrefixFilter } from "./list-filters.js";
import { statusTabs } from "./status-tabs.js";
import { every, type View } from "./view.js";

const PAGE_SIZE = 50;
/** The statuses of history: pending tasks are not in it. */
const HISTORY_STATUSES: readonly TaskStatusName[] = ["running", "cancelling", "completed", "failed", "canceled", "stuck"];

export function historyView(onAuth: (err: unknown) => boolean): View {
  /** undefined: All. */
  let origin: TaskOrigin | undefined;
  let typePrefix = "";
  let queue = "";
  const pages: string[] = [];
  let pageToken = "";
  let nextToken = "";
  const notice = h("div");
  const body = h("div");
  const pager = h("div", { class: "pager" });

  /** Loads the first page again, with the filters as they are now. */
  const restart = () => {
    pages.length = 0;
    pageToken = "";
    selection.clear();
    void refresher.now();
  };
  const tabs = statusTabs(HISTORY_STATUSES, restart);
  const selection = bulkSelect(onAuth, () => void refresher.now());
  const select = h(
    "select",
    {
      name: "origin",
      onchange: (e: Event) => {
        origin = ((e.target as HTMLSelectElement).value || undefined) as TaskOrigin | undefined;
        restart();
      },
    },
    h("option", { value: "" }, "All"),
    h("option", { value: "user" }, "User"),
    h("option", { value: "system" }, "System"),
  );
  const filters = h(
    "div",
    { class: "filters" },
    h("label", {}, "Origin", select),
    typePrefixFilter((v) => {
      typePrefix = v;
      restart();
    }),
    queueFilter((v) => {
      queue = v;
      restart();
    }),
  );
  const el = h("section", { "data-view": "history" }, h("h1", {}, "Task history"), tabs.el, filters, notice, selection.el, body, pager);

  const row = (t: TaskInfo) =>
    h(
      "tr",
      { class: "link", "data-task": t.id, onclick: () => (location.hash = `#/task/${t.id}`) },
      selection.rowCell(t),
      h("td", {}, statusBadge(t.status)),
      h("td", {}, when(t.createdAt)),
      h("td", { class: "wrap" }, t.displayTitle),
      h("td", {}, t.displayInitiator),
      h("td", {}, t.type),
      h("td", {}, t.id),
    );

  const options = (): ListHistoryOptions => {
    const status = tabs.picked();
    return { origin, typePrefix, queue, statuses: status ? [status] : undefined, pageSize: PAGE_SIZE, pageToken };
  };

  const load = async () => {
    try {
      const [res, counts] = await Promise.all([
        client.listHistory(options()),
        client.countTasks({ origin, typePrefix, queue }).catch(() => null), // the tabs then show no counts
      ]);
      nextToken = res.nextPageToken;
      fill(notice);
      tabs.setCounts(counts);
      fill(body, table([selection.headerCell(), "Status", "Created", "Title", "Initiator", "Type", "ID"], res.tasks.map(row), "No tasks yet."));
      selection.showing(res.tasks);
      const go = (token: string) => {
        pageToken = token;
        selection.clear();
        void refresher.now();
      };
      const forward = () => {
        pages.push(pageToken);
        go(nextToken);
      };
      fill(
        pager,
        h("button", { disabled: pages.length === 0, onclick: () => go(pages.pop() ?? "") }, "Previous"),
        h("button", { disabled: !nextToken, onclick: forward }, "Next"),
        h("span", { class: "origin" }, `Page ${pages.length + 1}`),
      );
    } catch (err) {
      if (!onAuth(err)) fill(notice, h("div", { class: "notice" }, describe(err)));
    }
  };
  const refresher = every(3_000, load);
  return { el, stop: () => refresher.stop() };
}
