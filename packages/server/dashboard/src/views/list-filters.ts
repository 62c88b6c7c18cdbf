/**
 * The filters both task lists share: type (a prefix: "report." finds every report task) and queue (a
 * list of the server's queues, from the client's listQueues, read once when the list opens).
 */
import { client } from "../api.js";
import { h } from "../dom.js";

/** A labelled input for the type prefix; `onChange` gets the trimmed text. */
export const typePrefixFilter = (onChange: (prefix: string) => void) =>
  h(
    "label",
    {},
    "Type",
    h("input", { type: "search", name: "type", placeholder: "starts with", oninput: (e: Event) => onChange((e.target as HTMLInputElement).value.trim()) }),
  );

/** A labelled select of the queues; `onChange` gets the queue's name, or "" for all of them. */
export function queueFilter(onChange: (queue: string) => void): HTMLElement {
  const select = h("select", { name: "queue", onchange: () => onChange(select.value) }, h("option", { value: "" }, "All queues"));
  client.listQueues().then(
    (res) => select.append(...res.queues.map((q) => h("option", { value: q.name }, q.name))),
    () => {}, // the list itself reports what is wrong with the server
  );
  return h("label", {}, "Queue", select);
}
