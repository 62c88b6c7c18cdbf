/**
 * The commands that talk to a server: each is one call (or stream) of the SDK's TaskClient, printed as
 * a table or lines for people, or as JSON with --json for scripts. main.ts loads this module (and with
 * it the SDK) only when one of them runs.
 */
import { readFileSync } from "node:fs";
import {
  ACTIVE_SORT_KEYS,
  ACTIVE_STATUSES,
  TASK_STATUSES,
  TaskClient,
  type ActiveSortKey,
  type AttemptInfo,
  type ConnectionOptions,
  type JsonObject,
  type QueueInfo,
  type TaskInfo,
  type TaskOrigin,
  type WatchEvent,
  type WorkerInfo,
} from "@taskq/sdk";
import { UsageError, int, keyValues, oneOf, out, paramValue, parse } from "./args.js";
import { ago, capitalize, duration, json, priority, table, time, words } from "./format.js";

type Command = (args: string[], client: () => TaskClient) => Promise<number>;

/** Runs a server command (main.ts has checked that `name` is one); the client connects on first use. */
export async function runCommand(name: string, args: string[]): Promise<number> {
  const commands: Record<string, Command> = { dispatch, status, watch, interrupt, active, history, queues, schedules, workers };
  let client: TaskClient | null = null;
  const connect = () => (client ??= new TaskClient(connectionOf(args)));
  try {
    return await commands[name](args, connect);
  } finally {
    (client as TaskClient | null)?.close();
  }
}

/** --url, --token and --ca (each also from the environment), read before the command parses the rest. */
function connectionOf(args: string[]): ConnectionOptions {
  const option = (name: string): string | undefined => {
    const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
    if (i < 0) return undefined;
    return args[i].includes("=") ? args[i].slice(name.length + 3) : args[i + 1];
  };
  const ca = option("ca") ?? process.env.TASKQ_CA;
  return {
    // Neither given: the SDK's DEFAULT_URL.
    url: option("url") ?? process.env.TASKQ_URL,
    token: option("token") ?? process.env.TASKQ_TOKEN,
    tls: ca ? { ca: readFileSync(ca) } : undefined,
  };
}

function oneId(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new UsageError(`${command}: expected one task id`);
  return positionals[0];
}

async function dispatch(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {
    param: { type: "string", short: "p", multiple: true },
    params: { type: "string" },
    queue: { type: "string" },
    title: { type: "string" },
    priority: { type: "string" },
    "delay-ms": { type: "string" },
    "max-attempts": { type: "string" },
    "timeout-ms": { type: "string" },
    "idempotency-key": { type: "string" },
    "concurrency-key": { type: "string" },
    watch: { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UsageError("dispatch: expected one task type");
  let params: JsonObject = {};
  if (values.params) {
    const parsed = paramValue(values.params);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UsageError("--params: expected a JSON object");
    params = parsed;
  }
  Object.assign(params, keyValues(values.param ?? [], "-p"));
  const handle = await client().dispatch(positionals[0], params, {
    queue: values.queue,
    title: values.title,
    priority: int("priority", values.priority),
    delayMs: int("delay-ms", values["delay-ms"]),
    maxAttempts: int("max-attempts", values["max-attempts"]),
    timeoutMs: int("timeout-ms", values["timeout-ms"]),
    idempotencyKey: values["idempotency-key"],
    concurrencyKey: values["concurrency-key"],
  });
  if (values.json) out(json({ taskId: handle.id, created: handle.created }));
  else out(handle.created ? `task ${handle.id} queued` : `task ${handle.id} already exists (same idempotency key); nothing queued`);
  return values.watch ? follow(handle.id, client(), Boolean(values.json)) : 0;
}

async function status(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {});
  const task = await client().status(oneId(positionals, "status"));
  if (values.json) {
    out(json(task));
    return 0;
  }
  const fields: [string, string][] = [
    ["id", task.id],
    ["status", capitalize(task.status)],
  ];
  // A pending task: what holds it back, as the server judged it just now.
  if (task.waiting) fields.push(["waiting", `${words(task.waiting.reason)}: ${task.waiting.detail}`]);
  fields.push(
    ["title", task.displayTitle],
    ["type", task.type],
    ["queue", task.queue],
    ["origin", capitalize(task.origin)],
    ["initiator", task.displayInitiator],
    ["priority", priority(task.priority)],
    ["attempts", `${task.attempts} of ${task.maxAttempts}`],
    ["created", time(task.createdAt)],
    ["started", time(task.startedAt)],
    ["finished", time(task.finishedAt)],
    ["worker", task.worker || "-"],
  );
  if (task.nodeId) fields.push(["node", task.nodeId]);
  if (task.concurrencyKey) fields.push(["concurrency key", task.concurrencyKey]);
  for (const [key, value] of Object.entries(task.statusValues)) fields.push([key, json(value)]);
  if (task.result !== undefined) fields.push(["result", json(task.result)]);
  if (task.error) fields.push(["error", task.error]);
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields) out(`${k.padEnd(width)}  ${v}`);
  if (task.log.length > 0) out("log:");
  for (const step of task.log) out(`  #${step.seq} ${time(step.time)}  ${step.message}`);
  if (task.attemptHistory.length > 0) {
    out("attempt history:");
    out(indent(attemptTable(task.attemptHistory)));
  }
  return 0;
}

/** One row per attempt; a running attempt has no duration yet. */
function attemptTable(attempts: AttemptInfo[]): string {
  const rows = attempts.map((a) => [
    String(a.number),
    time(a.startedAt),
    words(a.outcome),
    a.worker || "-",
    a.endedAt ? duration(a.endedAt.getTime() - a.startedAt.getTime()) : "-",
    a.error,
  ]);
  return table(["#", "started", "outcome", "worker", "duration", "error"], rows);
}

const indent = (lines: string) => lines.replace(/^/gm, "  ");

async function watch(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {});
  return follow(oneId(positionals, "watch"), client(), Boolean(values.json));
}

/** Prints a task's events until its final status; 0 when it COMPLETED, else 1. */
async function follow(id: string, client: TaskClient, asJson: boolean): Promise<number> {
  let last: string | null = null;
  const print = (e: WatchEvent) => {
    if (asJson) return out(json(e));
    if (e.type === "snapshot") {
      out(`task ${e.task.id} (${e.task.type}): ${e.task.status}`);
      for (const s of e.task.log) out(`[log #${s.seq} ${time(s.time)}] ${s.message}`);
      for (const [key, value] of Object.entries(e.task.statusValues)) out(`[${key}] ${json(value)}`);
    } else if (e.type === "log") out(`[log #${e.step.seq} ${time(e.step.time)}] ${e.step.message}`);
    else if (e.type === "status_value") out(`[${e.key}] ${json(e.value)}`);
    else out(`[status] ${e.status}${e.status === "running" ? ` (attempt ${e.attempts}, ${e.worker})` : ""}${e.error ? `: ${e.error}` : ""}`);
  };
  for await (const e of client.watch(id)) {
    print(e);
    last = e.type === "snapshot" ? e.task.status : e.type === "status" ? e.status : last;
  }
  const task = await client.status(id);
  if (!asJson) out(task.status === "completed" ? `completed: ${json(task.result)}` : `${task.status}: ${task.error || "-"}`);
  return task.status === "completed" ? 0 : 1;
}

async function interrupt(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, { reason: { type: "string" } });
  const id = oneId(positionals, "interrupt");
  const result = await client().interrupt(id, values.reason ?? "");
  if (values.json) out(json({ taskId: id, status: result }));
  else out(result === "canceled" ? `task ${id} canceled` : `task ${id} cancelling: its worker was told to stop`);
  return 0;
}

async function active(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {
    status: { type: "string", multiple: true },
    type: { type: "string" },
    search: { type: "string" },
    sort: { type: "string" },
    desc: { type: "boolean" },
    limit: { type: "string" },
  });
  if (positionals.length > 0) throw new UsageError("active: takes no arguments");
  const [sort] = oneOf<ActiveSortKey>("--sort", values.sort === undefined ? [] : [values.sort], ACTIVE_SORT_KEYS);
  const page = await client().listActive({
    statuses: oneOf("--status", values.status, ACTIVE_STATUSES),
    type: values.type,
    titleSearch: values.search,
    sort,
    descending: values.desc,
    pageSize: int("limit", values.limit),
  });
  if (values.json) {
    out(json(page));
    return 0;
  }
  const rows = page.tasks.map((t: TaskInfo) => [
    capitalize(t.origin),
    t.id,
    capitalize(t.status),
    t.displayTitle,
    time(t.createdAt),
    time(t.startedAt),
    String(t.attempts),
    priority(t.priority),
    t.type,
  ]);
  out(table(["origin", "id", "status", "title", "created", "started", "attempts", "priority", "type"], rows));
  return 0;
}

async function history(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {
    origin: { type: "string" },
    status: { type: "string", multiple: true },
    type: { type: "string" },
    limit: { type: "string" },
  });
  if (positionals.length > 0) throw new UsageError("history: takes no arguments");
  const [origin] = oneOf<TaskOrigin | "all">("--origin", [values.origin ?? "all"], ["user", "system", "all"]);
  const page = await client().listHistory({
    origin: origin === "all" ? undefined : origin,
    statuses: oneOf("--status", values.status, TASK_STATUSES),
    type: values.type,
    pageSize: int("limit", values.limit),
  });
  if (values.json) {
    out(json(page));
    return 0;
  }
  const rows = page.tasks.map((t) => [capitalize(t.status), time(t.createdAt), t.displayTitle, t.displayInitiator, t.id]);
  out(table(["status", "created", "title", "initiator", "id"], rows));
  return 0;
}

async function queues(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {});
  const [action, name, ...extra] = positionals;
  if (action !== undefined) {
    if ((action !== "pause" && action !== "resume") || !name || extra.length > 0) throw new UsageError("queues: pause <queue> or resume <queue>");
    const queue = action === "pause" ? await client().pauseQueue(name) : await client().resumeQueue(name);
    if (values.json) out(json(queue));
    else out(`queue ${queue.name} ${queue.paused ? "paused" : "resumed"} (${queue.pending} pending, ${queue.running} running)`);
    return 0;
  }
  const list = await client().listQueues();
  if (values.json) {
    out(json(list));
    return 0;
  }
  const rows = list.queues.map((q) => [
    q.name,
    q.maxWorkers === null ? "-" : String(q.maxWorkers),
    String(q.pending),
    q.oldestDueMs > 0 ? duration(q.oldestDueMs) : "-",
    String(q.running),
    q.paused ? "yes" : "no",
    q.maxRunningPerKey === null ? "-" : String(q.maxRunningPerKey),
    rateOf(q),
    String(q.keyCount),
    q.heldByKeyLimit + q.heldByRateLimit > 0 ? `${q.heldByKeyLimit} key, ${q.heldByRateLimit} rate` : "-",
  ]);
  // OLDEST WAIT: how long the queue's oldest due pending task has waited since it became due. HELD: due
  // tasks held back now by max_running_per_key and by a rate limit.
  out(table(["queue", "max workers", "pending", "oldest wait", "running", "paused", "per key", "rate", "keys", "held"], rows));
  out(`global max workers: ${list.globalMaxWorkers ?? "-"}; running in all queues: ${list.running}`);
  return 0;
}

/** The queue's rate limits, as "5/1s" for the queue and "2/400ms per key" for each key; "-" for none. */
function rateOf(q: QueueInfo): string {
  const per = (r: { tasks: number; perMs: number }) => `${r.tasks}/${duration(r.perMs)}`;
  const parts = [q.rateLimit && per(q.rateLimit), q.rateLimitPerKey && `${per(q.rateLimitPerKey)} per key`].filter(Boolean);
  return parts.length > 0 ? parts.join(", ") : "-";
}

async function schedules(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (positionals.length > 0) throw new UsageError("schedules: takes no arguments");
  const list = await client().listSchedules();
  if (values.json) {
    out(json(list));
    return 0;
  }
  const rows = list.map((s) => [s.name, s.cron, s.timeZone, s.type, s.queue, time(s.nextRunAt), time(s.lastRunAt), s.lastStatus ?? "-", s.source]);
  out(table(["schedule", "cron", "time zone", "type", "queue", "next run", "last run", "last status", "source"], rows));
  return 0;
}

/**
 * The connected workers on every replica, oldest connection first. Credits and LAST HEARD are as of the
 * replica's last heartbeat of the session (every few seconds); RUNNING is as of the call.
 */
async function workers(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (positionals.length > 0) throw new UsageError("workers: takes no arguments");
  const list = await client().listWorkers();
  if (values.json) {
    out(json(list));
    return 0;
  }
  const rows = list.map((w: WorkerInfo) => [
    w.name,
    w.replicaId,
    w.taskTypes.join(", "),
    w.queues.length > 0 ? w.queues.join(", ") : "all",
    // A worker that declared no concurrency (0) says nothing about how many it runs at once.
    `${w.running}/${w.concurrency || "-"}`,
    String(w.credits),
    ago(w.lastHeardAt),
  ]);
  out(table(["worker", "replica", "task types", "queues", "running", "credits", "last heard"], rows));
  return 0;
}
