/** Small DOM helpers and the formats every view shares (times, statuses, priority badges). */
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

/** "running" → "Running": how statuses, bands and origins are shown. */
const label = (name: string) => name.charAt(0).toUpperCase() + name.slice(1);

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

/** Replaces the children of `el`. */
export const fill = (el: Element, ...children: Child[]) => {
  el.replaceChildren();
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
};

/** A table whose header cells may be sortable; `rows` are the tbody rows. */
export function table(headers: (string | HTMLTableCellElement)[], rows: HTMLTableRowElement[], empty: string): HTMLTableElement {
  const cols = headers.length;
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, ...headers.map((x) => (typeof x === "string" ? h("th", {}, x) : x)))),
    h("tbody", {}, ...(rows.length > 0 ? rows : [h("tr", {}, h("td", { class: "empty", colspan: cols }, empty))])),
  );
}
