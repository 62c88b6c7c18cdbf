/**
 * Worker: register handlers by task type, start, and the worker holds one stream to the server,
 * running up to `concurrency` tasks at once. A handler's return value is the task's result (one over
 * 1 MiB as JSON fails the attempt, like a RetryableError); a thrown RetryableError asks for another
 * attempt; any other thrown error fails the task. An interrupt or timeout reaches the handler as its
 * AbortSignal. The stream reconnects with backoff (jittered) when it breaks; stop() finishes running
 * handlers first, and gives back unrun the leases that still arrive meanwhile.
 *
 * start() resolves once the server has welcomed the worker. Until then, a stream the server ends with
 * a code that retrying cannot change (a bad token, a bad hello: see WorkerRefusedError) makes start()
 * reject and the worker stop; anything else (the server not up yet, the network) is tried again with
 * backoff. Once welcomed, the worker reconnects whatever ends its stream, and reports it (onEvent
 * "disconnected") until stop().
 *
 * Each handler runs inside an OpenTelemetry span, "taskq.run <type>", in the trace its task was
 * dispatched in (tracing.ts); a no-op unless the application registers an OpenTelemetry SDK.
 */
import { fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema, durationFromMs } from "@bufbuild/protobuf/wkt";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import type { Lease } from "@taskq/protocol";
import { LIMITS, bytesBound } from "@taskq/protocol";
import { DEFAULT_CONCURRENCY, DEFAULT_RECONNECT, DEFAULT_STOP_ABORT_WAIT_MS, DEFAULT_STOP_GRACE_MS, TEMP_CLEANUP_TYPE } from "./defaults.js";
import { Code, TaskAbortedError, TaskSnoozed, TaskqError, WorkerRefusedError, type AbortReason } from "./errors.js";
import { Backoff } from "./internal/backoff.js";
import { errorOutcome, successOutcome } from "./internal/outcomes.js";
import { StreamSession, type Outcome } from "./internal/stream-session.js";
import { TempDirs } from "./internal/temp-dirs.js";
import { connect, type Connection, type ConnectionOptions } from "./transport.js";
import { runSpanStart } from "./tracing.js";

export interface TaskContext {
  readonly id: string;
  readonly type: string;
  readonly queue: string;
  readonly params: JsonObject;
  readonly title: string;
  /** This attempt's number, from 1. */
  readonly attempt: number;
  readonly maxAttempts: number;
  /** The key given at dispatch; with `attempt`, what a handler needs to avoid repeating side effects. */
  readonly idempotencyKey: string;
  /** The concurrency key given at dispatch: whose work this is ("" when none). */
  readonly concurrencyKey: string;
  /**
   * The W3C traceparent the lease carried: the trace the task was dispatched in ("" when none). For
   * handlers that pass it on by hand; with OpenTelemetry set up, the handler's own span is active anyway.
   */
  readonly traceParent: string;
  /** The W3C tracestate that goes with traceParent ("" when none). */
  readonly traceState: string;
  /**
   * Aborts when the task is interrupted, times out, or the worker loses its lease or stops; its reason
   * is a TaskAbortedError saying which. Whatever the handler returns after that, the task does not
   * complete: an interrupted task ends CANCELED, a timed-out attempt counts as failed.
   */
  readonly signal: AbortSignal;
  /** Appends a step to the task's log. */
  log(message: string): void;
  /** Sets a status value, such as ("progress", 40). */
  setStatus(key: string, value: JsonValue): void;
  /** Shorthand for setStatus("progress", percent). */
  progress(percent: number): void;
  /**
   * A directory for this task's files, under the worker's storage root (created on first call). It is
   * deleted an hour after the task finishes, or as setTempExpiration says.
   */
  tempDir(): Promise<string>;
  /** Keep the temp directory this many seconds after the task finishes; call after tempDir(). */
  setTempExpiration(seconds: number): Promise<void>;
  /**
   * Gives this attempt at least `ms` more from now before it times out (its deadline never moves
   * earlier): for a handler that legitimately runs long. Not while the task is being interrupted (its
   * grace period stays). Sent like a log step: nothing to await; a refusal comes as an
   * "update rejected" event.
   */
  extendDeadline(ms: number): void;
  /**
   * Ends this attempt without spending it: the task waits `ms` (0 to 7 days), then runs again. Throws a
   * TaskSnoozed for the worker to catch, so `ctx.snooze(60_000)` ends the handler where it is called.
   */
  snooze(ms: number): never;
}

export type Handler = (ctx: TaskContext) => unknown | Promise<unknown>;

export interface ImmediateOptions {
  /** Where log steps and status values go, one line each; default console.log. */
  report?: (line: string) => void;
  /** Aborts the handler's signal (the CLI wires Ctrl-C to it). */
  signal?: AbortSignal;
}

export interface HandlerOptions {
  /** Default timeout for tasks of this type dispatched without one. */
  timeoutMs?: number;
  /** A 5-field cron expression: the server runs this type on that schedule (origin SYSTEM, initiator "Scheduler"). */
  schedule?: string;
  /** The IANA time zone of the schedule; default UTC. */
  timeZone?: string;
}

/**
 * How a worker reaches its server: its own connection (ConnectionOptions), or `connection`, one made
 * with `connect()` and shared with other workers of the process (one HTTP/2 connection carrying each
 * worker's stream). A shared connection stays open when a worker stops; close it when all are done.
 */
export type WorkerOptions = WorkerSettings & (ConnectionOptions | { connection: Connection });

export interface WorkerSettings {
  /** Shown as the task's worker; defaults to host:pid. */
  name?: string;
  /** Tasks run at once; default DEFAULT_CONCURRENCY (10). */
  concurrency?: number;
  /** Queues to take tasks from; default all. */
  queues?: string[];
  /**
   * Reconnect backoff bounds; default DEFAULT_RECONNECT (100 ms, doubling up to 5 s). Each pause is drawn
   * at random from the upper half of the current bound, so workers that lost their streams together do
   * not reconnect together.
   */
  reconnect?: { initialMs?: number; maxMs?: number };
  /** Where tasks' temp directories live; default <os tmpdir>/taskq-tasks. */
  storageDir?: string;
  /**
   * Where the worker reports what happens to it; default silent. Events: "connected" {sessionId},
   * "disconnected" {error, code}, "refused" {error, code} (start() rejects), "lease declined" {task,
   * reason}, "finish rejected" and "update rejected" {task, code: RejectCode, reason}, "finish recorded
   * as failed" {task, status, error}, "handlers did not stop" {running} (stop() left handlers that
   * ignored their abort), and temp directory failures ("temp dir", "temp dir cleanup failed").
   */
  onEvent?: (event: string, detail?: Record<string, unknown>) => void;
}

type State = "idle" | "running" | "stopping" | "stopped";

/** How often the worker deletes expired temp directories by itself (besides at start and on TEMP_CLEANUP_TYPE tasks). */
const TEMP_CLEANUP_INTERVAL_MS = 3_600_000;
/** How long stop() waits, once the handlers are done, for the server to end the half-closed stream. */
const STREAM_END_WAIT_MS = 5_000;

export class Worker {
  private readonly handlers = new Map<string, { fn: Handler; opts: HandlerOptions }>();
  /** The running attempts, by lease token (a task re-leased after a timeout may run twice here). */
  private readonly aborts = new Map<string, { taskId: string; abort: AbortController }>();
  private readonly temp: TempDirs;
  private tempCleanupTimer: NodeJS.Timeout | null = null;
  private immediateRuns = 0;
  private readonly connection: Connection;
  /** False when the connection was given and is shared: then stop() leaves it open. */
  private readonly ownsConnection: boolean;
  private readonly stopSignal = new AbortController();
  private state: State = "idle";
  private session: StreamSession | null = null;
  private loop: Promise<void> | null = null;
  private firstOpen: { promise: Promise<void>; resolve: () => void };

  constructor(private readonly opts: WorkerOptions) {
    this.ownsConnection = !("connection" in opts);
    this.connection = "connection" in opts ? opts.connection : connect(opts);
    this.temp = new TempDirs(opts.storageDir ?? path.join(tmpdir(), "taskq-tasks"));
    let resolve!: () => void;
    this.firstOpen = { promise: new Promise<void>((r) => (resolve = r)), resolve };
  }

  register(type: string, handler: Handler, opts: HandlerOptions = {}): this {
    if (this.state !== "idle") throw new TaskqError("register handlers before start()", Code.FailedPrecondition);
    this.handlers.set(type, { fn: handler, opts });
    return this;
  }

  /**
   * Connects and starts taking tasks; resolves once the server has welcomed the worker. Rejects with a
   * WorkerRefusedError, the worker stopped, when the server refuses it for good (see the header).
   */
  async start(): Promise<void> {
    if (this.handlers.size === 0) throw new TaskqError("register at least one handler before start()", Code.FailedPrecondition);
    if (this.state !== "idle") throw new TaskqError(`worker already ${this.state}`, Code.FailedPrecondition);
    if (!this.handlers.has(TEMP_CLEANUP_TYPE)) {
      this.handlers.set(TEMP_CLEANUP_TYPE, { fn: async () => ({ removed: (await this.removeExpiredTempDirs()).length }), opts: {} });
    }
    this.state = "running";
    // Directories that expired while the worker was down go now; then hourly.
    await this.removeExpiredTempDirs().catch((err) => this.emit("temp dir cleanup failed", { error: String(err) }));
    this.tempCleanupTimer = setInterval(
      () => void this.removeExpiredTempDirs().catch((err) => this.emit("temp dir cleanup failed", { error: String(err) })),
      TEMP_CLEANUP_INTERVAL_MS,
    );
    this.tempCleanupTimer.unref();
    this.loop = this.connectLoop();
    await Promise.race([this.firstOpen.promise, this.loop]);
  }

  /** How many handlers are running now. */
  get running(): number {
    return this.aborts.size;
  }

  /**
   * Stops taking tasks, lets running handlers finish (up to graceMs, default DEFAULT_STOP_GRACE_MS,
   * then aborts them), and closes. Handlers that ignore their abort are waited for abortWaitMs more
   * (default DEFAULT_STOP_ABORT_WAIT_MS), then left running without their finishes: their tasks go back
   * to the queue, the attempt counted, when the stream ends.
   */
  async stop(opts: { graceMs?: number; abortWaitMs?: number } = {}): Promise<void> {
    if (this.state === "stopped" || this.state === "idle") return;
    this.state = "stopping";
    let leaveRunning!: () => void;
    const leftRunning = new Promise<void>((resolve) => (leaveRunning = resolve));
    let abortWait: NodeJS.Timeout | undefined;
    const grace = setTimeout(() => {
      this.abortAll("worker_stopping");
      abortWait = setTimeout(() => {
        if (this.running > 0) this.emit("handlers did not stop", { running: this.running });
        leaveRunning();
      }, opts.abortWaitMs ?? DEFAULT_STOP_ABORT_WAIT_MS);
    }, opts.graceMs ?? DEFAULT_STOP_GRACE_MS);
    await this.session?.drain(leftRunning);
    clearTimeout(grace);
    clearTimeout(abortWait);
    // The stream is half-closed; the server ends it once it has recorded the last finishes.
    const ended = await Promise.race([this.loop?.then(() => true, () => true), sleep(STREAM_END_WAIT_MS, this.stopSignal.signal).then(() => false)]);
    this.stopSignal.abort();
    if (!ended) await this.loop?.catch(() => {});
    this.release();
  }

  /** The worker is done: its timer goes, and its connection unless it is shared. */
  private release(): void {
    if (this.tempCleanupTimer) clearInterval(this.tempCleanupTimer);
    if (this.ownsConnection) this.connection.close();
    this.state = "stopped";
  }

  private abortAll(reason: AbortReason): void {
    for (const a of this.aborts.values()) a.abort.abort(new TaskAbortedError(reason));
  }

  private emit(event: string, detail?: Record<string, unknown>) {
    this.opts.onEvent?.(event, detail);
  }

  /**
   * Connects, runs the stream to its end, and connects again after a pause, until stop(). Rejects with a
   * WorkerRefusedError (the worker released) when the server refuses the worker before ever welcoming it.
   */
  private async connectLoop(): Promise<void> {
    const backoff = new Backoff({
      initialMs: this.opts.reconnect?.initialMs ?? DEFAULT_RECONNECT.initialMs,
      maxMs: this.opts.reconnect?.maxMs ?? DEFAULT_RECONNECT.maxMs,
    });
    let welcomed = false;
    while (this.state === "running") {
      const session = new StreamSession(this.connection.transport, this.helloInfo(), {
        run: (lease, s) => this.runLease(lease, s),
        cancel: (leaseToken, reason) => this.aborts.get(leaseToken)?.abort.abort(new TaskAbortedError(reason)),
        lapsed: () => this.abortAll("lease_lost"),
        note: (message, detail) => this.emit(message, detail),
        opened: (sessionId) => {
          welcomed = true;
          backoff.reset();
          this.emit("connected", { sessionId });
          this.firstOpen.resolve();
        },
      });
      this.session = session;
      try {
        await session.run(this.stopSignal.signal);
      } catch (err) {
        const refused = welcomed ? null : WorkerRefusedError.fromStreamEnd(err);
        if (refused && this.state === "running") {
          this.emit("refused", { error: refused.message, code: refused.codeName });
          this.release();
          throw refused;
        }
        if (this.state === "running") this.emit("disconnected", { error: (err as Error).message, code: TaskqError.from(err).codeName });
      }
      // The server returned this session's leases to the queue; stop the handlers still holding them.
      this.abortAll("lease_lost");
      if (this.state !== "running") break;
      await sleep(backoff.next(), this.stopSignal.signal);
    }
  }

  private helloInfo() {
    return {
      workerName: this.opts.name ?? `${hostname()}:${process.pid}`,
      taskTypes: [...this.handlers].map(([name, h]) => ({
        name,
        timeoutMs: h.opts.timeoutMs,
        schedule: h.opts.schedule,
        timeZone: h.opts.timeZone,
      })),
      queues: this.opts.queues ?? [],
      concurrency: this.opts.concurrency ?? DEFAULT_CONCURRENCY,
    };
  }

  private async runLease(lease: Lease, session: StreamSession): Promise<void> {
    const { taskId, leaseToken } = lease;
    const abort = new AbortController();
    this.aborts.set(leaseToken, { taskId, abort });
    let open = true;
    let usedTempDir = false;
    const ctx: TaskContext = {
      id: taskId,
      type: lease.type,
      queue: lease.queue,
      params: lease.params ?? {},
      title: lease.title,
      attempt: lease.attempt,
      maxAttempts: lease.maxAttempts,
      idempotencyKey: lease.idempotencyKey,
      concurrencyKey: lease.concurrencyKey,
      traceParent: lease.traceParent,
      traceState: lease.traceState,
      signal: abort.signal,
      log: (message) => {
        const text = String(message);
        if (open) session.send({ case: "logStep", value: { taskId, leaseToken, message: text } }, bytesBound(0, text.length));
      },
      setStatus: (key, value) => {
        if (!open) return;
        const bytes = bytesBound(JSON.stringify(value)?.length ?? 4, key.length);
        session.send({ case: "statusValue", value: { taskId, leaseToken, key, value: jsonValue(`setStatus(${key})`, value) } }, bytes);
      },
      progress: (percent) => ctx.setStatus("progress", percent),
      tempDir: () => {
        usedTempDir = true;
        return this.temp.create(taskId);
      },
      setTempExpiration: (seconds) => this.temp.setTtl(taskId, seconds * 1000),
      extendDeadline: (ms) => {
        if (!open) return;
        const timeout = durationFromMs(Math.round(Math.min(Math.max(ms, 1), LIMITS.durationMs)));
        session.send({ case: "extendDeadline", value: { taskId, leaseToken, timeout } });
      },
      snooze: (ms) => {
        throw new TaskSnoozed(ms);
      },
    };
    let finished: { outcome: Outcome; bytes: number };
    const span = runSpanStart(lease);
    try {
      const handler = this.handlers.get(lease.type);
      if (!handler) throw new TaskqError(`no handler registered for task type ${lease.type}`, Code.NotFound);
      finished = successOutcome(await span.within(() => handler.fn(ctx)));
    } catch (err) {
      finished = errorOutcome(err, abort.signal.aborted);
    } finally {
      open = false;
      this.aborts.delete(leaseToken);
    }
    span.end(...spanOutcome(finished.outcome));
    // The temp directory's expiry starts now; a failure to mark it must not lose the outcome.
    if (usedTempDir) await this.temp.finished(taskId).catch((err) => this.emit("temp dir", { task: taskId, error: String(err) }));
    session.finish(lease, finished.outcome, finished.bytes);
  }

  /**
   * Immediate mode: runs a registered handler here and now, with no server and no database (the
   * seed's `rsx:task:run`). Log steps and status values go to `report` (the CLI prints them); no
   * timeout applies; a temp directory works as usual. Resolves with the handler's result.
   */
  async run(type: string, params: JsonObject = {}, opts: ImmediateOptions = {}): Promise<unknown> {
    const handler = this.handlers.get(type);
    if (!handler) {
      throw new TaskqError(`no handler registered for task type ${type} (registered: ${[...this.handlers.keys()].join(", ")})`, Code.NotFound);
    }
    const id = `immediate-${process.pid}-${++this.immediateRuns}`;
    const report = opts.report ?? ((line: string) => console.log(line));
    let usedTempDir = false;
    const ctx: TaskContext = {
      id,
      type,
      queue: "",
      params,
      title: "",
      attempt: 1,
      maxAttempts: 1,
      idempotencyKey: "",
      concurrencyKey: "",
      traceParent: "",
      traceState: "",
      signal: opts.signal ?? new AbortController().signal,
      log: (message) => report(`[log] ${message}`),
      setStatus: (key, value) => report(`[status] ${key} = ${JSON.stringify(value)}`),
      progress: (percent) => ctx.setStatus("progress", percent),
      tempDir: () => {
        usedTempDir = true;
        return this.temp.create(id);
      },
      setTempExpiration: (seconds) => this.temp.setTtl(id, seconds * 1000),
      // No timeout applies here; a snooze ends the run as a TaskSnoozed error (there is no queue to wait in).
      extendDeadline: () => {},
      snooze: (ms) => {
        throw new TaskSnoozed(ms);
      },
    };
    try {
      return await handler.fn(ctx);
    } finally {
      if (usedTempDir) await this.temp.finished(id);
    }
  }

  /** Deletes expired temp directories of tasks not running here; returns the paths deleted. */
  async removeExpiredTempDirs(): Promise<string[]> {
    const running = new Set([...this.aborts.values()].map((a) => a.taskId));
    return this.temp.removeExpired(running);
  }
}

/** An attempt's outcome as its span ends with it: the outcome's name, and the error of a failed attempt. */
function spanOutcome(outcome: Outcome): [string, string?] {
  switch (outcome?.case) {
    case "failure":
    case "retry":
      return [outcome.case, (outcome.value as { error?: string }).error ?? ""];
    default:
      return [outcome?.case ?? "none"];
  }
}

/** A value a handler gave as a protobuf Value; one JSON cannot hold (undefined, a function) is an INVALID_ARGUMENT. */
function jsonValue(what: string, value: JsonValue) {
  try {
    return fromJson(ValueSchema, value);
  } catch (err) {
    throw new TaskqError(`${what}: not a JSON value`, Code.InvalidArgument, { cause: err });
  }
}

/**
 * Resolves after `ms`, or at once when `signal` aborts. The abort listener goes when the timer fires:
 * the worker's stop signal lives as long as the worker, and a listener left on it per reconnect would
 * pile up (MaxListenersExceededWarning after ten).
 */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });

