/**
 * Bulk selection in a task list: a checkbox per row and one in the header for every row on the page,
 * and, with a selection, "Interrupt selected" and "Retry selected" (each after a confirmation), which
 * call the client's interruptMany / retryMany with the selected ids and then say how many tasks they
 * changed. A button is enabled when some selected task is in a status its action applies to. The
 * selection is of rows on the page shown: a task that leaves the page leaves the selection.
 */
import type { TaskInfo, TaskStatusName } from "@taskq/sdk/client";
import { actionFailed, client } from "../api.js";
import { fill, h } from "../dom.js";

const INTERRUPTIBLE: readonly TaskStatusName[] = ["pending", "running"];
const RETRYABLE: readonly TaskStatusName[] = ["failed", "canceled", "stuck"];

export interface BulkSelect {
  /** The selection's count and buttons, and what the last action did. */
  el: HTMLElement;
  /** The header cell: select every row on the page. */
  headerCell(): HTMLTableCellElement;
  /** A row's cell: select this task. */
  rowCell(t: TaskInfo): HTMLTableCellElement;
  /** The tasks the list shows now, after each load: the selection keeps only those. */
  showing(tasks: TaskInfo[]): void;
  /** Forgets the selection (the filters or the page changed). */
  clear(): void;
}

export function bulkSelect(onAuth: (err: unknown) => boolean, afterAction: () => void): BulkSelect {
  /** Selected task id → its status as last shown. */
  const selected = new Map<string, TaskStatusName>();
  let page: TaskInfo[] = [];
  let all: HTMLInputElement | null = null;
  const boxes = new Map<string, HTMLInputElement>();
  const bar = h("div", { class: "bulk" });
  const result = h("div");
  const el = h("div", {}, bar, result);

  const update = () => {
    if (all) {
      const on = page.filter((t) => selected.has(t.id)).length;
      all.checked = on > 0 && on === page.length;
      all.indeterminate = on > 0 && on < page.length;
    }
    for (const [id, box] of boxes) box.checked = selected.has(id);
    const statuses = [...selected.values()];
    fill(
      bar,
      selected.size > 0 && h("span", { class: "selected-count" }, `${selected.size} selected`),
      selected.size > 0 &&
        h("button", { class: "danger", name: "interrupt-selected", disabled: !statuses.some((s) => INTERRUPTIBLE.includes(s)), onclick: () => void act("interrupt") }, "Interrupt selected"),
      selected.size > 0 && h("button", { name: "retry-selected", disabled: !statuses.some((s) => RETRYABLE.includes(s)), onclick: () => void act("retry") }, "Retry selected"),
    );
  };

  const act = async (action: "interrupt" | "retry") => {
    const ids = [...selected.keys()];
    const tasks = ids.length === 1 ? "task" : "tasks";
    const question = action === "interrupt" ? `Interrupt ${ids.length} selected ${tasks}?` : `Retry ${ids.length} selected ${tasks}, each as a new task?`;
    if (!confirm(question)) return;
    const say = (message: string, cls: string) => fill(result, h("div", { class: cls, role: "status" }, message));
    try {
      const res = action === "interrupt" ? await client.interruptMany({ ids }, { reason: "interrupted from the dashboard" }) : await client.retryMany({ ids });
      const others = action === "interrupt" ? "the others were no longer pending or running" : "the others were not failed, canceled or stuck, or were retried before";
      const done = `${action === "interrupt" ? "Interrupted" : "Retried"} ${res.count} of ${ids.length} selected ${tasks}`;
      say(res.count < ids.length ? `${done} (${others}).` : `${done}.`, "bulk-result");
      selected.clear();
      update();
      afterAction();
    } catch (err) {
      actionFailed(action === "interrupt" ? "Interrupting the selected tasks" : "Retrying the selected tasks", err, onAuth, (m) => say(m, "notice"));
    }
  };

  const headerCell = () => {
    all = h("input", {
      type: "checkbox",
      name: "select-all",
      "aria-label": "select every task on this page",
      onchange: () => {
        const on = all?.checked ?? false;
        for (const t of page) {
          if (on) selected.set(t.id, t.status);
          else selected.delete(t.id);
        }
        update();
      },
    });
    boxes.clear();
    return h("th", { class: "select" }, all);
  };

  const rowCell = (t: TaskInfo) => {
    const box = h("input", {
      type: "checkbox",
      name: "select",
      "aria-label": `select task ${t.id}`,
      onchange: () => {
        if (box.checked) selected.set(t.id, t.status);
        else selected.delete(t.id);
        update();
      },
    });
    boxes.set(t.id, box);
    // A click in the cell selects; it must not also open the task, as a click elsewhere in the row does.
    return h("td", { class: "select", onclick: (e: Event) => e.stopPropagation() }, box);
  };

  const showing = (tasks: TaskInfo[]) => {
    page = tasks;
    const now = new Map(tasks.map((t) => [t.id, t.status]));
    for (const id of [...selected.keys()]) {
      const status = now.get(id);
      if (status === undefined) selected.delete(id);
      else selected.set(id, status);
    }
    update();
  };

  const clear = () => {
    selected.clear();
    fill(result);
    update();
  };
  return { el, headerCell, rowCell, showing, clear };
}
