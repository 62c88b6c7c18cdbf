/**
 * The conformance cases, run in this order against one worker under test (scripts/conformance.ts
 * says how it is started and what its task types do). Each case dispatches through the harness's
 * TaskClient and checks how the task ended: status changes, attempts, result, error text, log steps,
 * status values. Time is only ever checked from below (a retry no sooner than its delay), except where
 * a bound is the point and generous: an interrupted sleep must end before the interrupt grace (15 s)
 * would have ended it without the worker.
 *
 * Where a case must act while the worker runs a task (interrupt it, cut its stream) and the task could
 * finish first on a slow machine, the proxy holds the worker's messages to the server from before the
 * lease, so the task cannot finish until the case lets it.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { JsonObject, TaskClient, TaskHandle, TaskInfo } from "@taskq/sdk";
import { QUEUE, TIMINGS, type Proc } from "./conformance-env.js";
import { at, check, expectEnded, follow, same, show, type CaseEnv } from "./conformance-follow.js";
import type { TcpProxy } from "./tcp-proxy.js";

export interface HarnessEnv extends CaseEnv {
  proxy: TcpProxy;
  worker: Proc;
  /** Stops the server with SIGTERM (its exit code is returned) and starts it again on the same port and database. */
  restartServer(): Promise<number | null>;
}

export interface Case {
  name: string;
  /** The case stops the worker itself: its exit does not end the case. */
  stopsWorker?: boolean;
  run(env: HarnessEnv): Promise<void>;
}

/** Timestamps on the server's clock are whole milliseconds and timers may fire up to 1 ms early: the slack of a lower bound. */
const CLOCK_SLACK_MS = 5;
const REASON = "conformance";

/** JSON of every kind, with the integers a double holds exactly, floats, and strings outside ASCII. */
const ECHO_PARAMS = {
  zero: 0,
  one: 1,
  negative: -42,
  maxSafe: 2 ** 53 - 1,
  minSafe: -(2 ** 53 - 1),
  float: 1.5,
  smallFloat: -0.25,
  pi: Math.PI,
  tiny: 1e-7,
  big: 1e21,
  yes: true,
  no: false,
  nothing: null,
  empty: "",
  unicode: "héllo wörld — 日本語 🚀 ∑",
  escapes: 'quote " backslash \\ newline \n tab \t',
  emptyObject: {},
  emptyArray: [],
  list: [1, "two", 3.5, null, [4, [5]], { six: 6 }],
  nested: { a: { b: { c: { d: [0, -1, { e: "deep" }] } } } },
  "key with spaces & ünïcode": 7,
};

/** A task that completes on its first attempt; `want` checks how. */
const simple = (name: string, type: string, params: JsonObject, want: (task: TaskInfo) => void): Case => ({
  name,
  async run(env) {
    const f = await follow(env, type, params);
    const task = await f.final();
    expectEnded(f, task, { statuses: "running completed", attempts: 1 });
    want(task);
  },
});

export const CASES: Case[] = [
  simple("echo", "conformance.echo", ECHO_PARAMS, (task) => same("result", task.result, ECHO_PARAMS)),

  {
    name: "log",
    async run(env) {
      const f = await follow(env, "conformance.log", { steps: 20 });
      const task = await f.final();
      expectEnded(f, task, { statuses: "running completed", attempts: 1, result: { logged: 20 } });
      same("log steps", task.log.map((s) => s.message), Array.from({ length: 20 }, (_, i) => `step ${i + 1}`));
      same("log steps' attempts", [...new Set(task.log.map((s) => s.attempt))], [1]);
      const watched = f.events.flatMap((e) => (e.type === "log" ? [e.step.message] : []));
      same("log steps as watched", watched, task.log.map((s) => s.message));
    },
  },

  {
    name: "progress",
    async run(env) {
      const values = [0, 12.5, 50, 99.9, 100];
      const f = await follow(env, "conformance.progress", { values });
      const task = await f.final();
      expectEnded(f, task, { statuses: "running completed", attempts: 1, result: {} });
      same("status values", task.statusValues, { progress: 100, phase: "done" });
      // Values set within a few ms may reach a watcher as the last one only: those seen are in order.
      const seen = f.events.flatMap((e) => (e.type === "status_value" && e.key === "progress" ? [e.value] : []));
      const positions = seen.map((v) => values.indexOf(v as number));
      check(positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1])), `progress as watched: ${show(seen)}, not in the order of ${show(values)}`);
    },
  },

  {
    name: "fail",
    async run(env) {
      const message = "conformance failure: ünïcode ✓ 🚀";
      // A retry instead of a failure would show as another attempt at once (retry delay 0).
      const f = await follow(env, "conformance.fail", { message }, { maxAttempts: 5, retryDelayMs: 0 });
      expectEnded(f, await f.final(), { statuses: "running failed", attempts: 1, error: message, result: undefined });
    },
  },

  {
    name: "retry",
    async run(env) {
      // The task's own retry delay is 0: only the worker's delay can hold the retries back.
      const times = 2;
      const delayMs = 500;
      const f = await follow(env, "conformance.retry", { times, delay_ms: delayMs }, { maxAttempts: 5, retryDelayMs: 0 });
      const task = await f.final();
      expectEnded(f, task, { statuses: "running pending running pending running completed", attempts: 3, result: { attempt: 3 } });
      const changes = f.changes;
      for (let i = 1; i < changes.length - 1; i += 2) {
        const [retried, next] = [changes[i], changes[i + 1]];
        same(`error of attempt ${retried.attempts}`, retried.error, `retry ${times}`);
        const waited = at(next) - at(retried);
        check(waited >= delayMs - CLOCK_SLACK_MS, `attempt ${next.attempts} started ${waited} ms after attempt ${retried.attempts} failed, before the ${delayMs} ms delay`);
      }
    },
  },

  {
    name: "sleep_interrupt",
    async run(env) {
      const f = await follow(env, "conformance.sleep", { ms: 60_000 }, { maxAttempts: 3 });
      await f.status("running");
      same("interrupt", await env.client.interrupt(f.handle.id, REASON), "cancelling");
      const task = await f.final();
      expectEnded(f, task, { statuses: "running cancelling canceled", attempts: 1, error: `interrupted: ${REASON}`, result: undefined });
      const [, cancelling, canceled] = f.changes;
      const took = at(canceled) - at(cancelling);
      // Past the grace the server ends it CANCELED without the worker: before it, the worker stopped.
      check(took < TIMINGS.TASKQ_CANCEL_GRACE_MS, `canceled ${took} ms after the interrupt: the worker did not stop the sleep (the grace ended it)`);
    },
  },

  {
    name: "ignore_cancel",
    async run(env) {
      // The worker's finish is held until the interrupt is in, so the handler cannot finish before it.
      const ms = 1_500;
      const f = await follow(env, "conformance.ignore_cancel", { ms }, { maxAttempts: 3, beforeResume: () => env.proxy.hold("up") });
      try {
        await f.status("running");
        same("interrupt", await env.client.interrupt(f.handle.id, REASON), "cancelling");
      } finally {
        env.proxy.release();
      }
      const task = await f.final();
      expectEnded(f, task, { statuses: "running cancelling canceled", attempts: 1, error: `interrupted: ${REASON}`, result: undefined });
      const [running, , canceled] = f.changes;
      const ran = at(canceled) - at(running);
      check(ran >= ms - CLOCK_SLACK_MS, `canceled ${ran} ms after the lease: the handler did not run its ${ms} ms (cancellation was not ignored)`);
    },
  },

  {
    name: "timeout",
    async run(env) {
      // No timeout at dispatch: the 300 ms the worker declared for the type in its hello applies.
      const f = await follow(env, "conformance.timeout", {}, { maxAttempts: 1 });
      expectEnded(f, await f.final(), { statuses: "running stuck", attempts: 1, error: "attempt 1 timed out after 0.3s", result: undefined });
    },
  },

  simple("large_result", "conformance.large_result", { bytes: 1_000_000 }, (task) => {
    const data = (task.result as { data?: unknown } | undefined)?.data;
    check(typeof data === "string" && data.length === 1_000_000 && /^x*$/.test(data), `result: not {"data": "x" × 1000000} (got ${show(task.result)})`);
  }),

  {
    name: "large_result_over_limit",
    async run(env) {
      // 5 MiB: sent anyway, it would end the worker's stream (a message over 4 MiB), and the task would
      // end STUCK; turned into a retry by the worker, each attempt fails and the last ends FAILED.
      const f = await follow(env, "conformance.large_result", { bytes: 5 * 1024 * 1024 }, { maxAttempts: 2, retryDelayMs: 0 });
      const task = await f.final();
      expectEnded(f, task, { statuses: "running pending running failed", attempts: 2, result: undefined });
      for (const c of f.changes.filter((c) => c.status === "pending" || c.status === "failed")) {
        check(c.error.includes("1048576"), `error of attempt ${c.attempts}: ${show(c.error)} does not name the limit of 1048576 bytes`);
      }
    },
  },

  {
    name: "context",
    async run(env) {
      const key = `conformance-${Date.now()}-${Math.random().toString(36).slice(2)}`;
      const f = await follow(env, "conformance.context", {}, { maxAttempts: 4, idempotencyKey: key, concurrencyKey: "tenant-7" });
      const task = await f.final();
      expectEnded(f, task, { statuses: "running completed", attempts: 1 });
      const want = { attempt: 1, max_attempts: 4, idempotency_key: key, concurrency_key: "tenant-7", type: "conformance.context", queue: QUEUE, id: f.handle.id };
      same("result", task.result, want);
    },
  },

  {
    name: "many_tasks",
    async run(env) {
      const items = Array.from({ length: 50 }, (_, i) => ({ type: "conformance.echo", queue: QUEUE, params: { i, label: `task ${i}` } }));
      const tasks = await settled(env.client, await env.client.dispatchBatch(items), env.signal);
      tasks.forEach((t, i) => {
        same(`task ${i}: status`, t.status, "completed");
        same(`task ${i}: attempts (a task run twice counts two)`, t.attempts, 1);
        same(`task ${i}: result`, t.result, items[i].params);
      });
    },
  },

  {
    name: "parallel",
    async run(env) {
      // With its messages held, the worker can return no credit: what one claim leased it when the
      // queue resumed is all that can run, and it must be more than one task.
      const items = Array.from({ length: 4 }, () => ({ type: "conformance.sleep", queue: QUEUE, params: { ms: 500 } }));
      let handles: TaskHandle[] = [];
      let running = 0;
      await env.client.pauseQueue(QUEUE);
      try {
        try {
          handles = await env.client.dispatchBatch(items);
          env.proxy.hold("up");
        } finally {
          await env.client.resumeQueue(QUEUE);
        }
        const countRunning = async () => (await Promise.all(handles.map((h) => h.status()))).filter((t) => t.status === "running").length;
        await poll(env.signal, async () => ((await countRunning()) > 0 ? true : null));
        // Read again: the reads that saw the first lease may have straddled the claim; now it stands still.
        running = await countRunning();
      } finally {
        env.proxy.release();
      }
      check(running >= 2, `${running} of 4 tasks ran at once: the worker must run at least 2 at a time`);
      const tasks = await settled(env.client, handles, env.signal);
      for (const t of tasks) same(`task ${t.id}: status`, `${t.status}(${t.attempts})`, "completed(1)");
    },
  },

  {
    name: "stream_cut",
    async run(env) {
      // Held from before the lease, attempt 1 cannot finish; the reset ends the stream it runs on.
      const f = await follow(env, "conformance.sleep", { ms: 1_000 }, { maxAttempts: 3, beforeResume: () => env.proxy.hold("up") });
      try {
        await f.status("running");
        env.proxy.reset();
      } finally {
        env.proxy.release();
      }
      const task = await f.final();
      expectEnded(f, task, { statuses: "running pending running completed", attempts: 2, result: { slept: 1_000 } });
    },
  },

  {
    name: "server_restart",
    async run(env) {
      const code = await env.restartServer();
      same("the server's exit code on SIGTERM", code, 0);
      const f = await follow(env, "conformance.echo", { after: "restart" });
      expectEnded(f, await f.final(), { statuses: "running completed", attempts: 1, result: { after: "restart" } });
    },
  },

  {
    name: "worker_stop",
    stopsWorker: true,
    async run(env) {
      // SIGTERM while a task runs: a graceful stop lets it finish, then the worker exits 0. RUNNING says
      // the server leased the task, not that the worker has read the lease: SIGTERM before that would
      // half-close a stream the lease is still on its way down (§17.13). A worker reads its stream in
      // order, so once a task leased after this one has completed, the worker holds this one.
      const f = await follow(env, "conformance.sleep", { ms: 3_000 }, { maxAttempts: 1 });
      await f.status("running");
      const marker = await env.client.dispatch("conformance.echo", { marker: true }, { queue: QUEUE });
      same("a task leased after the sleep", await marker.result({ signal: env.signal }), { marker: true });
      env.worker.signal("SIGTERM");
      const task = await f.final();
      expectEnded(f, task, { statuses: "running completed", attempts: 1, result: { slept: 3_000 } });
      const exit = await Promise.race([env.worker.exited, aborted(env.signal)]);
      same("the worker's exit on SIGTERM", exit, { code: 0, signal: null });
    },
  },
];

/** Each task as it ended, once all have. */
async function settled(client: TaskClient, handles: TaskHandle[], signal: AbortSignal): Promise<TaskInfo[]> {
  await Promise.all(handles.map((h) => h.result({ signal }).catch((err) => {
    if (signal.aborted) throw new Error(`task ${h.id} did not end: ${abortError(signal).message}`);
    return err; // ended other than COMPLETED: the status says how
  })));
  return Promise.all(handles.map((h) => client.status(h.id)));
}

/** Calls `probe` every 20 ms until it returns a value; rejects when `signal` aborts first. */
async function poll<T>(signal: AbortSignal, probe: () => Promise<T | null>): Promise<T> {
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    await delay(20, undefined, { signal }).catch(() => {
      throw abortError(signal);
    });
  }
}

/** Rejects when `signal` aborts (the case's deadline, or the worker exited). */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(abortError(signal));
    else signal.addEventListener("abort", () => reject(abortError(signal)), { once: true });
  });
}

const abortError = (signal: AbortSignal) => new Error(String(signal.reason?.message ?? signal.reason));
