/**
 * Active tasks: the live queue (pending, running, cancelling) from the client's listActive, refreshed
 * every 2 seconds, under status tabs with counts (countTasks). Search by id and title; filter by type
 * (prefix), queue and created-at range; sort by any column (click a header); pages of 50; select rows
 * to interrupt or retry them together (bulk-select.ts).
 */
import { ACTIVE_STATUSES, type ActiveSortKey, type ListActiveOptions, type TaskInfo } from "@taskq/sdk/client";
import { client, describe } from "../api.js";
import { fill, h, originLabel, priorityBadge, statusBadge, table, when } from "../dom.js";
import { bulkSelect } from "./bulk-select.js";
import { queueFilter, typePrefixFilter } from "./list-filters.js";
import { statusTabs } from "./status-tabs.js";
import { every, type View } from "./view.js";

const PAGE_SIZE = 50;
const COLUMNS: [string, ActiveSortKey][] = [
  ["Origin", "origin"],
  ["ID", "id"],
  ["Status", "status"],
  ["Task title", "title"],
  ["Created at", "created"],
  ["Started at", "started"],
  ["Retry attempts", "attempts"],
  ["Priority", "priority"],
  ["Type", "type"],
];

type TextFilter = "id" | "title" | "type" | "queue" | "after" | "before";

export function activeView(onAuth: (err: unknown) => boolean): View {
  const query = { id: "", title: "", type: "", queue: "", after: "", before: "", sort: "created" as ActiveSortKey, descending: true };
  /** Page tokens of the pages before the current one, and the current one's. */
  const pages: string[] = [];
  let pageToken = "";
  let nextToken = "";

  const changed = (key: TextFilter, value: string) => {
    query[key] = value;
    restart();
  };
  const input = (label: string, key: TextFilter, type = "search") =>
    h("label", {}, label, h("input", { type, name: key, oninput: (e: Event) => changed(key, (e.target as HTMLInputElement).value) }));
  const tabs = statusTabs(ACTIVE_STATUSES, () => restart());
  const selection = bulkSelect(onAuth, () => void refresher.now());
  const notice = h("div");
  const body = h("div");
  const pager = h("div", { class: "pager" });
  const el = h(
    "section",
    { "data-view": "active" },
    h("h1", {}, "Active tasks"),
    tabs.el,
    h(
      "div",
      { class: "filters" },
      input("ID", "id"),
      input("Task title", "title"),
      typePrefixFilter((v) => changed("type", v)),
      queueFilter((v) => changed("queue", v)),
      input("Created after", "after", "datetime-local"),
      input("Created before", "before", "datetime-local"),
    ),
    notice,
    selection.el,
    body,
    pager,
  );

  const options = (): ListActiveOptions => {
    const status = tabs.picked();
    return {
      id: query.id.trim(),
      titleSearch: query.title.trim(),
      typePrefix: query.type.trim(),
      queue: query.queue,
      statuses: status ? [status] : undefined,
      createdAfter: query.after ? new Date(query.after) : undefined,
      createdBefore: query.before ? new Date(query.before) : undefined,
      sort: query.sort,
      descending: query.descending,
      pageSize: PAGE_SIZE,
      pageToken,
    };
  };

  const header = ([label, sort]: [string, ActiveSortKey]) => {
    const sorted = sort === query.sort;
    return h(
      "th",
      {
        class: `sortable${sorted ? " sorted" : ""}${sorted && query.descending ? " desc" : ""}`,
        onclick: () => {
          query.descending = sorted ? !query.descending : false;
          query.sort = sort;
          restart();
        },
      },
      label,
    );
  };

  const row = (t: TaskInfo) =>
    h(
      "tr",
      { class: "link", "data-task": t.id, onclick: () => (location.hash = `#/task/${t.id}`) },
      selection.rowCell(t),
      h("td", {}, h("span", { class: "origin" }, originLabel(t.origin))),
      h("td", {}, t.id),
      h("td", {}, statusBadge(t.status)),
      h("td", { class: "wrap" }, t.displayTitle),
      h("td", {}, when(t.createdAt)),
      h("td", {}, when(t.startedAt)),
      h("td", {}, t.attempts),
      h("td", {}, priorityBadge(t.priorityBand, t.priority)),
      h("td", {}, t.type),
    );

  const load = async () => {
    try {
      const [res, counts] = await Promise.all([
        client.listActive(options()),
        client.countTasks({ queue: query.queue, typePrefix: query.type.trim() }).catch(() => null), // the tabs then show no counts
      ]);
      nextToken = res.nextPageToken;
      fill(notice);
      tabs.setCounts(counts);
      fill(body, table([selection.headerCell(), ...COLUMNS.map(header)], res.tasks.map(row), "No active tasks."));
      selection.showing(res.tasks);
      const forward = () => {
        pages.push(pageToken);
        restart(nextToken);
      };
      fill(
        pager,
        h("button", { disabled: pages.length === 0, onclick: () => restart(pages.pop()) }, "Previous"),
        h("button", { disabled: !nextToken, onclick: forward }, "Next"),
        h("span", { class: "origin" }, `Page ${pages.length + 1} · refreshed ${new Date().toLocaleTimeString()}`),
      );
    } catch (err) {
      if (!onAuth(err)) fill(notice, h("div", { class: "notice" }, describe(err)));
    }
  };

  let debounce: ReturnType<typeof setTimeout> | undefined;
  /** Loads again shortly (typing settles first), from the first page unless `token` names another. */
  const restart = (token = "") => {
    if (token === "") pages.length = 0;
    pageToken = token;
    selection.clear();
    clearTimeout(debounce);
    debounce = setTimeout(() => void refresher.now(), 200);
  };
  const refresher = every(2_000, load);
  const stop = () => {
    clearTimeout(debounce);
    refresher.stop();
  };
  return { el, stop };
}
