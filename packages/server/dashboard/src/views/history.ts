/**
 * Task history: running and finished tasks, newest first, refreshed every 3 seconds. Filter by origin
 * (User, System, All); pages of 50.
 */
import { Origin, type Task } from "@taskq/protocol";
import { api, describe } from "../api.js";
import { fill, h, statusBadge, table, when } from "../dom.js";
import { every, type View } from "./view.js";

const PAGE_SIZE = 50;

export function historyView(onAuth: (err: unknown) => boolean): View {
  let origin = Origin.UNSPECIFIED;
  const pages: string[] = [];
  let pageToken = "";
  let nextToken = "";
  const notice = h("div");
  const body = h("div");
  const pager = h("div", { class: "pager" });
  const select = h(
    "select",
    {
      name: "origin",
      onchange: (e: Event) => {
        origin = Number((e.target as HTMLSelectElement).value) as Origin;
        pages.length = 0;
        pageToken = "";
        void refresher.now();
      },
    },
    h("option", { value: Origin.UNSPECIFIED }, "All"),
    h("option", { value: Origin.USER }, "User"),
    h("option", { value: Origin.SYSTEM }, "System"),
  );
  const el = h("section", { "data-view": "history" }, h("h1", {}, "Task history"), h("div", { class: "filters" }, h("label", {}, "Origin", select)), notice, body, pager);

  const row = (t: Task) =>
    h(
      "tr",
      { class: "link", "data-task": t.id, onclick: () => (location.hash = `#/task/${t.id}`) },
      h("td", {}, statusBadge(t.status)),
      h("td", {}, when(t.createdAt)),
      h("td", { class: "wrap" }, t.displayTitle),
      h("td", {}, t.displayInitiator),
      h("td", {}, t.type),
      h("td", {}, t.id),
    );

  const load = async () => {
    try {
      const res = await api.listHistory({ origin, pageSize: PAGE_SIZE, pageToken });
      nextToken = res.nextPageToken;
      fill(notice);
      fill(body, table(["Status", "Created", "Title", "Initiator", "Type", "ID"], res.tasks.map(row), "No tasks yet."));
      const go = (token: string) => {
        pageToken = token;
        void refresher.now();
      };
      fill(
        pager,
        h("button", { disabled: pages.length === 0, onclick: () => go(pages.pop() ?? "") }, "Previous"),
        h("button", { disabled: !nextToken, onclick: () => (pages.push(pageToken), go(nextToken)) }, "Next"),
        h("span", { class: "origin" }, `Page ${pages.length + 1}`),
      );
    } catch (err) {
      if (!onAuth(err)) fill(notice, h("div", { class: "notice" }, describe(err)));
    }
  };
  const refresher = every(3_000, load);
  return { el, stop: () => refresher.stop() };
}
