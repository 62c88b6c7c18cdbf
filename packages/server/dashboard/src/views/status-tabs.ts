/**
 * Status tabs over a task list: "All", then one tab per status the list holds, each with how many
 * tasks are in it (the client's countTasks, with the list's queue, type and origin filters; a count
 * stops at 10,000 and then reads "10,000+"; a zero shows no number). Clicking a tab filters the list
 * by that status. The counts are the list view's to fetch, on its own refresh.
 */
import type { StatusCount, TaskStatusName } from "@taskq/sdk/client";
import { count, fill, h, label } from "../dom.js";

export interface StatusTabs<S extends TaskStatusName> {
  el: HTMLElement;
  /** The status picked, or null for All. */
  picked(): S | null;
  /** Shows these counts; null when they could not be had (the tabs then show none). */
  setCounts(counts: StatusCount[] | null): void;
}

export function statusTabs<S extends TaskStatusName>(statuses: readonly S[], onPick: () => void): StatusTabs<S> {
  let picked: S | null = null;
  const numbers = new Map<TaskStatusName, HTMLElement>();
  const tabs: HTMLButtonElement[] = [];
  const tab = (status: S | null) => {
    const number = h("span", { class: "count" });
    if (status) numbers.set(status, number);
    const button = h(
      "button",
      {
        type: "button",
        class: "tab",
        role: "tab",
        "data-tab": status ?? "all",
        "aria-selected": status === picked ? "true" : "false",
        onclick: () => {
          picked = status;
          for (const t of tabs) t.setAttribute("aria-selected", t === button ? "true" : "false");
          onPick();
        },
      },
      status ? label(status) : "All",
      " ",
      number,
    );
    tabs.push(button);
    return button;
  };
  const el = h("div", { class: "tabs", role: "tablist" }, tab(null), ...statuses.map(tab));

  const setCounts = (counts: StatusCount[] | null) => {
    for (const [status, number] of numbers) {
      const c = counts?.find((x) => x.status === status);
      fill(number, c && (c.count > 0 || c.more) ? `${count(c.count)}${c.more ? "+" : ""}` : "");
    }
  };
  return { el, picked: () => picked, setCounts };
}
