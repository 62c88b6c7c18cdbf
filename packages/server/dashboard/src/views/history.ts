/**
 * Task history: running and finished tasks, newest first, refreshed every 3 seconds. Filter by origin
 * (User, System, All); pages of 50.
 */
import type { TaskInfo, TaskOrigin } from "@taskq/sdk/client";
import { client, describe } from "../api.js";
import { fill, h, statusBadge, table, when } from "../dom.js";
import { every, type View } from "./view.js";

const PAGE_SIZE = 50;

export function historyView(onAuth: (err: unknown) => boolean): View {
  /** undefined: All. */
  let origin: TaskOrigin | undefined;
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
        origin = ((e.target as HTMLSelectElement).value || undefined) as TaskOrigin | undefined;
        pages.length = 0;
        pageToken = "";
        void refresher.now();
      },
    },
    h("option", { value: "" }, "All"),
    h("option", { value: "user" }, "User"),
    h("option", { value: "system" }, "System"),
  );
  const el = h("section", { "data-view": "history" }, h("h1", {}, "Task history"), h("div", { class: "filters" }, h("label", {}, "Origin", select)), notice, body, pager);

  const row = (t: TaskInfo) =>
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
      const res = await client.listHistory({ origin, pageSize: PAGE_SIZE, pageToken });
      nextToken = res.nextPageToken;
      fill(notice);
      fill(body, table(["Status", "Created", "Title", "Initiator", "Type", "ID"], res.tasks.map(row), "No tasks yet."));
      const go = (token: string) => {
        pageToken = token;
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
