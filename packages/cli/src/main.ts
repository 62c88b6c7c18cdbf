/**
 * `taskq`: the operator CLI. Each command is one call (or stream) against a server, printed as a
 * table or lines for people, or as JSON with --json for scripts. Exit codes: 0 success; 1 the server
 * refused, could not be reached, or a watched or run task did not complete; 2 a usage error.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ActiveSortField } from "@taskq/protocol";
import { Origin, TaskStatus } from "@taskq/protocol";
import { TaskClient, TaskqError, Worker, type ConnectionOptions, type JsonObject, type JsonValue, type TaskInfo, type WatchEvent } from "@taskq/sdk";
import { capitalize, json, priority, table, time } from "./format.js";

const USAGE = `taskq: operate a taskq server (--url or TASKQ_URL, default http://127.0.0.1:50051;
       --token or TASKQ_TOKEN when the server has auth on; --ca FILE or TASKQ_CA to trust a TLS CA)

  taskq dispatch <type> [-p key=value]... [--params JSON] [--queue Q] [--title T] [--priority N]
                 [--delay-ms N] [--max-attempts N] [--timeout-ms N] [--idempotency-key K] [--watch]
  taskq status <id>                 one task: fields, status values, log, result or error
  taskq watch <id>                  the log live until the task ends; exit 1 unless it COMPLETED
  taskq interrupt <id> [--reason R]
  taskq active [--status S]... [--type T] [--search TEXT] [--sort COLUMN] [--desc] [--limit N]
  taskq history [--origin user|system|all] [--status S]... [--type T] [--limit N]
  taskq queues [pause <queue> | resume <queue>]
  taskq schedules
  taskq run <module> <type> [--key=value]...
                                    immediate mode: run a handler of the Worker that <module> exports,
                                    here, with no server; log lines and the result go to stdout

Options: --json for machine-readable output, --url URL, --token TOKEN, --ca FILE, --help.
Exit codes: 0 success, 1 failure (an error from the server, or a task that did not complete), 2 usage.`;

class UsageError extends Error {}

const COMMON = {
  json: { type: "boolean" },
  url: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

type Options = NonNullable<ParseArgsConfig["options"]>;

function parse<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

const int = (name: string, raw: string | undefined) => {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new UsageError(`--${name}: "${raw}" is not an integer`);
  return n;
};

/** "3" → 3, "true" → true, '{"a":1}' → object, anything else stays a string. */
function paramValue(raw: string): JsonValue {
  try {
    return JSON.parse(raw) as JsonValue;
  } catch {
    return raw;
  }
}

function keyValues(pairs: string[], flag: string): JsonObject {
  const out: JsonObject = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`${flag} ${pair}: expected key=value`);
    out[pair.slice(0, eq)] = paramValue(pair.slice(eq + 1));
  }
  return out;
}

const STATUS_NAMES = ["pending", "running", "cancelling", "completed", "failed", "canceled", "stuck"];
function statuses(values: string[] | undefined): TaskStatus[] {
  return (values ?? []).map((s) => {
    const i = STATUS_NAMES.indexOf(s.toLowerCase());
    if (i < 0) throw new UsageError(`--status ${s}: one of ${STATUS_NAMES.join(", ")}`);
    return (i + 1) as TaskStatus;
  });
}

const out = (line: string) => process.stdout.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    out(USAGE);
    return command ? 0 : 2;
  }
  if (command === "run") return runImmediate(rest);
  const commands: Record<string, (args: string[], client: () => TaskClient) => Promise<number>> = {
    dispatch,
    status,
    watch,
    interrupt,
    active,
    history,
    queues,
    schedules,
  };
  const run = commands[command];
  if (!run) throw new UsageError(`unknown command "${command}"`);
  let client: TaskClient | null = null;
  const connect = () => (client ??= new TaskClient(connectionOf(rest)));
  try {
    return await run(rest, connect);
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
    url: option("url") ?? process.env.TASKQ_URL ?? "http://127.0.0.1:50051",
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
  ];
  if (task.nodeId) fields.push(["node", task.nodeId]);
  for (const [key, value] of Object.entries(task.statusValues)) fields.push([key, json(value)]);
  if (task.result !== undefined) fields.push(["result", json(task.result)]);
  if (task.error) fields.push(["error", task.error]);
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields) out(`${k.padEnd(width)}  ${v}`);
  if (task.log.length > 0) out("log:");
  for (const step of task.log) out(`  #${step.seq} ${time(step.time)}  ${step.message}`);
  return 0;
}

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

const SORTS: Record<string, ActiveSortField> = {
  id: ActiveSortField.ID,
  status: ActiveSortField.STATUS,
  title: ActiveSortField.TITLE,
  created: ActiveSortField.CREATED_AT,
  started: ActiveSortField.STARTED_AT,
  attempts: ActiveSortField.ATTEMPTS,
  priority: ActiveSortField.PRIORITY,
  type: ActiveSortField.TYPE,
  origin: ActiveSortField.ORIGIN,
};

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
  const sortBy = values.sort === undefined ? ActiveSortField.UNSPECIFIED : SORTS[values.sort];
  if (sortBy === undefined) throw new UsageError(`--sort ${values.sort}: one of ${Object.keys(SORTS).join(", ")}`);
  const page = await client().listActive({
    statuses: statuses(values.status),
    type: values.type,
    titleSearch: values.search,
    sortBy,
    descending: values.desc,
    pageSize: int("limit", values.limit) ?? 50,
  });
  if (values.json) return out(json(page)), 0;
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
  const origins: Record<string, Origin> = { user: Origin.USER, system: Origin.SYSTEM, all: Origin.UNSPECIFIED };
  const origin = origins[values.origin ?? "all"];
  if (origin === undefined) throw new UsageError(`--origin ${values.origin}: one of user, system, all`);
  const page = await client().listHistory({
    origin,
    statuses: statuses(values.status),
    type: values.type,
    pageSize: int("limit", values.limit) ?? 50,
  });
  if (values.json) return out(json(page)), 0;
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
  if (values.json) return out(json(list)), 0;
  const rows = list.queues.map((q) => [
    q.name,
    q.maxWorkers === null ? "-" : String(q.maxWorkers),
    String(q.pending),
    String(q.running),
    q.paused ? "yes" : "no",
  ]);
  out(table(["queue", "max workers", "pending", "running", "paused"], rows));
  out(`global max workers: ${list.globalMaxWorkers ?? "-"}; running in all queues: ${list.running}`);
  return 0;
}

async function schedules(args: string[], client: () => TaskClient): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (positionals.length > 0) throw new UsageError("schedules: takes no arguments");
  const list = await client().listSchedules();
  if (values.json) return out(json(list)), 0;
  const rows = list.map((s) => [s.name, s.cron, s.timeZone, s.type, s.queue, time(s.nextRunAt), time(s.lastRunAt), s.lastStatus ?? "-", s.source]);
  out(table(["schedule", "cron", "time zone", "type", "queue", "next run", "last run", "last status", "source"], rows));
  return 0;
}

/** Immediate mode: `run <module> <type> [--key=value]...` with the Worker the module exports. */
async function runImmediate(args: string[]): Promise<number> {
  const asJson = args.includes("--json");
  const [modulePath, type, ...pairs] = args.filter((a) => a !== "--json");
  if (!modulePath || !type) throw new UsageError("run: expected <module> <type>");
  const params: JsonObject = {};
  for (const pair of pairs) {
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(pair);
    if (!m) throw new UsageError(`run: ${pair}: expected --key=value`);
    params[m[1]] = m[2] === undefined ? true : paramValue(m[2]);
  }
  const mod = (await import(pathToFileURL(path.resolve(modulePath)).href)) as Record<string, unknown>;
  const worker = Object.values(mod).find((v): v is Worker => v instanceof Worker);
  if (!worker) throw new UsageError(`run: ${modulePath} exports no Worker`);
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort(new Error("interrupted from the terminal")));
  // With --json, stdout carries only the result; log lines go to stderr.
  const report = (line: string) => (asJson ? process.stderr : process.stdout).write(`${line}\n`);
  try {
    const result = await worker.run(type, params, { report, signal: abort.signal });
    out(asJson ? json({ result: result ?? null }) : `result: ${json(result)}`);
    return 0;
  } catch (err) {
    process.stderr.write(`failed: ${(err as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`taskq: ${err.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    const e = TaskqError.from(err);
    process.stderr.write(`taskq: ${e.codeName}: ${e.message}\n`);
    process.exit(1);
  },
);
