/** Small DOM helpers and the formats every view shares (times, durations, counts, statuses, priority badges). */
import type { TaskInfo, TaskOrigin, TaskStatusName } from "@taskq/sdk/client";

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

/** Creates an element: attributes (on* names become listeners), then children (falsy ones skipped). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** "running" → "Running", "timed_out" → "Timed out": how statuses, bands, origins and outcomes are shown. */
export const label = (name: string) => (name.charAt(0).toUpperCase() + name.slice(1)).replaceAll("_", " ");

/** A status as a badge; its class is the status name (style.css colours it), its data-status the label. */
export const statusBadge = (s: TaskStatusName) => h("span", { class: `badge ${s}`, "data-status": label(s) }, label(s));

export const priorityBadge = (band: TaskInfo["priorityBand"], priority: number) => h("span", { class: `badge ${band}`, title: `priority ${priority}` }, label(band));

export const originLabel = (o: TaskOrigin) => label(o);

/** A time as local date and time to the second, or a dash. */
export const when = (d: Date | null | undefined): string => {
  if (!d) return "—";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
};

/** A duration for people: "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min". */
export const duration = (ms: number): string => {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  const s = Math.floor(ms / 1_000);
  if (s < 3_600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3_600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")} min`;
};

/** A whole number with thousands separators: 10000 → "10,000". */
export const count = (n: number): string => n.toLocaleString("en-US");

/** A link to a task's page, shown as "#id". */
export const taskLink = (id: string, attrs: Attrs = {}) => h("a", { href: `#/task/${id}`, ...attrs }, `#${id}`);

/** Replaces the children of `el`. */
export const fill = (el: Element, ...children: Child[]) => {
  el.replaceChildren();
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
};

/**
 * A table whose header cells may be sortable; `rows` are the tbody rows. It comes in a box of its own
 * that scrolls sideways when the table is wider than the window, so the page itself never does.
 */
export function table(headers: (string | HTMLTableCellElement)[], rows: HTMLTableRowElement[], empty: string): HTMLElement {
  const cols = headers.length;
  return h(
    "div",
    { class: "table-box" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...headers.map((x) => (typeof x === "string" ? h("th", {}, x) : x)))),
      h("tbody", {}, ...(rows.length > 0 ? rows : [h("tr", {}, h("td", { class: "empty", colspan: cols }, empty))])),
    ),
  );
}
