/** Small DOM helpers and the formats every view shares (times, statuses, priority badges). */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Origin, PriorityBand, TaskStatus } from "@taskq/protocol";

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

export const STATUS_LABEL: Record<TaskStatus, string> = {
  [TaskStatus.UNSPECIFIED]: "Unknown",
  [TaskStatus.PENDING]: "Pending",
  [TaskStatus.RUNNING]: "Running",
  [TaskStatus.CANCELLING]: "Cancelling",
  [TaskStatus.COMPLETED]: "Completed",
  [TaskStatus.FAILED]: "Failed",
  [TaskStatus.CANCELED]: "Canceled",
  [TaskStatus.STUCK]: "Stuck",
};

export const isActive = (s: TaskStatus) => s === TaskStatus.PENDING || s === TaskStatus.RUNNING || s === TaskStatus.CANCELLING;

export const statusBadge = (s: TaskStatus) => h("span", { class: `badge ${STATUS_LABEL[s].toLowerCase()}`, "data-status": STATUS_LABEL[s] }, STATUS_LABEL[s]);

const BAND: Record<PriorityBand, [string, string]> = {
  [PriorityBand.UNSPECIFIED]: ["", "—"],
  [PriorityBand.LOW]: ["low", "Low"],
  [PriorityBand.MEDIUM]: ["medium", "Medium"],
  [PriorityBand.HIGH]: ["high", "High"],
};

export const priorityBadge = (band: PriorityBand, priority: number) =>
  h("span", { class: `badge ${BAND[band][0]}`, title: `priority ${priority}` }, BAND[band][1]);

export const originLabel = (o: Origin) => (o === Origin.SYSTEM ? "System" : o === Origin.USER ? "User" : "—");

/** A timestamp as local date and time to the second, or a dash. */
export const when = (t: Timestamp | undefined): string => {
  if (!t) return "—";
  const d = timestampDate(t);
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
