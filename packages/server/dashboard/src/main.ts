/**
 * The taskq dashboard: Active tasks, Task history, task details, queues (with activity charts) and
 * workers, in the browser, over the same TaskQueue API every client uses. Routes live in the URL hash
 * (#/active, #/history, #/task/ID, #/queues, #/workers). When the server wants a token, every view
 * gives way to a token form.
 */
import { needsToken, token } from "./api.js";
import { fill, h } from "./dom.js";
import { activeView } from "./views/active.js";
import { historyView } from "./views/history.js";
import { queuesView } from "./views/queues.js";
import { taskView } from "./views/task.js";
import type { View } from "./views/view.js";
import { workersView } from "./views/workers.js";

const main = document.getElementById("view")!;
let current: View | null = null;

/** Shows the token form instead of the view when `err` says the server wants a (valid) token. */
function onAuth(err: unknown): boolean {
  if (!needsToken(err)) return false;
  if (!main.querySelector(".login")) show(loginView(token.get() !== ""));
  return true;
}

function loginView(rejected: boolean): View {
  const input = h("input", { type: "password", name: "token", placeholder: "token", autocomplete: "off" });
  const el = h(
    "section",
    { class: "login card" },
    h("h1", {}, "Token"),
    h("p", {}, rejected ? "The server did not accept that token. Enter another." : "This server needs a token (a client or admin token from its config)."),
    h(
      "form",
      {
        onsubmit: (e: Event) => {
          e.preventDefault();
          token.set(input.value.trim());
          route();
        },
      },
      input,
      h("button", { type: "submit" }, "Continue"),
    ),
  );
  if (rejected) token.clear();
  return { el, stop: () => {} };
}

function show(view: View) {
  current?.stop();
  current = view;
  fill(main, view.el);
}

function route() {
  const [, name = "active", arg] = location.hash.split("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.getAttribute("data-view") === name);
  document.title = "taskq";
  if (name === "task" && arg) show(taskView(decodeURIComponent(arg), onAuth));
  else if (name === "history") show(historyView(onAuth));
  else if (name === "queues") show(queuesView(onAuth));
  else if (name === "workers") show(workersView(onAuth));
  else show(activeView(onAuth));
}

window.addEventListener("hashchange", route);
route();
