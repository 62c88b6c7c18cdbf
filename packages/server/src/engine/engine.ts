/**
 * The queue engine of one server replica: dispatch, read, watch, interrupt, retries and bulk actions
 * (operator-actions.ts), and worker sessions.
 * It owns the replica's notifier, lease dispatcher, finish batcher, reaper and session keeper; it
 * knows nothing of gRPC. Every input reaching it is already well-formed (the RPC layer validates fields);
 * the engine checks what needs its own state, such as whether a queue exists.
 */
import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { Logger } from "pino";
import { systemClock, type Clock } from "./clock.js";
import { LeaseDispatcher } from "./dispatcher.js";
import { noMeter, type Meter } from "./meter.js";
import { failedPrecondition, invalidArgument, notFound, unavailable } from "./errors.js";
import { FinishBatcher } from "./finisher.js";
import { DispatchBatcher } from "./inserter.js";
import { TableStats } from "./table-stats.js";
import { DEFAULT_STATS_INTERVAL_MS, StatsSampler } from "./stats-sampler.js";
import { queueStatsList, taskCountsByStatus } from "./sql/stats.js";
import { Notifier } from "./notifier.js";
import { CHANNEL_CANCEL, CHANNEL_DISPATCH, CHANNEL_SCHEDULE } from "./sql/db.js";
import { taskInterrupt } from "./sql/interrupt.js";
import { taskGet, taskGetWithLog, taskListActive, taskListHistory } from "./sql/read.js";
import { queueCountsList, queuePausedSet } from "./sql/queues.js";
import { scheduleList } from "./sql/schedules.js";
import { sessionList } from "./sql/sessions.js";
import { SCHEDULER_INITIATOR, Scheduler, type FiredTick } from "./scheduler.js";
import { BUILTIN_SCHEDULES, DEFAULT_HISTORY_RETENTION_DAYS, maintenanceHandlers } from "./maintenance.js";
import { SystemWorker } from "./system-worker.js";
import { SessionKeeper } from "./session-keeper.js";
import { OperatorActions } from "./operator-actions.js";
import { Reaper, type SweepResult } from "./reaper.js";
import { WorkerSession, type SessionSink } from "./session.js";
import type { CountQuery, StatsSample, StatusCount } from "./types.js";
import type { ActiveQuery, AuditEntry, BulkRequest, BulkResult, CancelReason, DispatchResult, HistoryQuery, NewTask, QueueCounts, QueueLimits } from "./types.js";
import { newTaskOf, type DispatchInput } from "./dispatch-input.js";
import type { ScheduleDef, ScheduleRow, TaskDetail, TaskRecord, WakeOnFree, WorkerHello, WorkerInfo } from "./types.js";
import { explainWaits } from "./waiting.js";
import { TaskEvents, type WatchEvent } from "./watch.js";
import {
  DEFAULT_CANCEL_GRACE_MS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_STALE_CHECK_MS,
  DEFAULT_TIMEOUT_MS,
  SCHEDULED_QUEUE,
  livenessTimings,
  keyShares,
  limitedQueues,
  queueLimits,
  scheduleDef,
  timeoutsOf,
  type QueueInfo,
  type QueueSettings,
  type ScheduleConfig,
  type TaskTypeSettings,
} from "./settings.js";

export interface EngineOptions {
  pool: pg.Pool;
  /** Connection settings for the dedicated LISTEN connection. */
  listenConnection: pg.ClientConfig;
  log: Logger;
  queues: Record<string, QueueSettings>;
  taskTypes?: Record<string, TaskTypeSettings>;
  /** The most tasks running at once in all queues, across every worker and replica; unset: no limit. */
  globalMaxWorkers?: number | null;
  /** Schedules from config, already validated. */
  schedules?: ScheduleConfig[];
  /** Finished tasks are deleted this many days after they finished; default 30. */
  historyRetentionDays?: number;
  /** Declare the built-in maintenance schedules (history retention, temp cleanup); default true. */
  builtinSchedules?: boolean;
  clock?: Clock;
  replicaId?: string;
  pollIntervalMs?: number;
  staleCheckMs?: number;
  cancelGraceMs?: number;
  defaultTimeoutMs?: number;
  /** Told what happens, for metrics; default: nothing is counted. */
  meter?: Meter;
  /** How often the queues' depth and finished tasks are sampled for GetStats; default a minute. */
  statsIntervalMs?: number;
}

export class Engine {
  readonly replicaId: string;
  readonly clock: Clock;
  readonly log: Logger;
  private readonly pool: pg.Pool;
  private readonly queues: Record<string, QueueSettings>;
  private readonly notifier: Notifier;
  private readonly dispatcher: LeaseDispatcher;
  private readonly finisher: FinishBatcher;
  private readonly inserter: DispatchBatcher;
  private readonly tableStats: TableStats;
  private readonly statsSampler: StatsSampler;
  private readonly events: TaskEvents;
  private readonly reaper: Reaper;
  private readonly sessions = new Map<string, WorkerSession>();
  private readonly timings: ReturnType<typeof livenessTimings>;
  private readonly cancelGraceMs: number;
  private readonly wakeOnFree: WakeOnFree;
  private readonly limits: QueueLimits;
  private readonly globalMaxWorkers: number | null;
  private readonly scheduler: Scheduler;
  private readonly configSchedules: ScheduleDef[];
  private readonly systemWorker: SystemWorker;
  private readonly meter: Meter;
  private readonly keeper: SessionKeeper;
  private readonly operatorActions: OperatorActions;
  private stopping = false;
  private readonly drain = new AbortController();

  constructor(opts: EngineOptions) {
    this.pool = opts.pool;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log;
    this.queues = opts.queues;
    this.replicaId = opts.replicaId ?? randomUUID();
    this.meter = opts.meter ?? noMeter;
    this.timings = livenessTimings(opts.staleCheckMs ?? DEFAULT_STALE_CHECK_MS);
    this.cancelGraceMs = opts.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS;
    this.notifier = new Notifier(opts.listenConnection, this.log);
    this.globalMaxWorkers = opts.globalMaxWorkers ?? null;
    const limits = queueLimits(this.queues, this.globalMaxWorkers);
    this.limits = limits;
    this.wakeOnFree = limitedQueues(limits);
    this.dispatcher = new LeaseDispatcher(this.pool, this.clock, this.log, {
      pollIntervalMs: opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
      timeouts: {
        types: timeoutsOf(opts.taskTypes ?? {}),
        queues: timeoutsOf(this.queues),
        defaultMs: opts.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      },
      limits,
      shares: keyShares(this.queues),
      wakeOnFree: this.wakeOnFree,
      meter: this.meter,
    });
    this.reaper = new Reaper(this.pool, this.clock, this.log, { ...this.timings, wakeOnFree: this.wakeOnFree, meter: this.meter });
    this.finisher = new FinishBatcher(this.pool, this.clock, this.wakeOnFree);
    this.inserter = new DispatchBatcher(this.pool, this.clock);
    this.tableStats = new TableStats(this.pool, this.log);
    this.statsSampler = new StatsSampler(this.pool, this.clock, this.log, {
      intervalMs: opts.statsIntervalMs ?? DEFAULT_STATS_INTERVAL_MS,
      queues: () => this.queueNames(),
      rates: limits.rates,
    });
    const systemHandlers = maintenanceHandlers({ db: this.pool, clock: this.clock, retentionDays: opts.historyRetentionDays ?? DEFAULT_HISTORY_RETENTION_DAYS });
    this.scheduler = new Scheduler(this.pool, this.clock, this.log, {
      // A built-in schedule the server does not run itself (taskq.temp-cleanup, for SDK workers) waits
      // for a worker that runs it: workers in other languages never lease it.
      needsWorker: (def) => def.source === "builtin" && !(def.type in systemHandlers),
      pollIntervalMs: opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
      taskFor: (def) =>
        this.withDefaults(
          { type: def.type, queue: def.queue, params: def.params, title: def.title, priority: def.priority, origin: "system", initiator: SCHEDULER_INITIATOR },
          "",
        ),
    });
    this.configSchedules = [
      ...(opts.schedules ?? []).map((s) => scheduleDef(s, "config")),
      ...(opts.builtinSchedules === false ? [] : BUILTIN_SCHEDULES).map((s) => scheduleDef(s, "builtin")),
    ];
    this.systemWorker = new SystemWorker(systemHandlers, this.log);
    this.keeper = new SessionKeeper(this.pool, this.log, {
      heartbeatIntervalMs: this.timings.heartbeatIntervalMs,
      silentAfterMs: this.timings.silentAfterMs,
      sessions: () => this.sessions.values(),
      onTick: () => this.systemWorker.keepAlive(),
    });
    this.operatorActions = new OperatorActions({
      pool: this.pool,
      clock: this.clock,
      meter: this.meter,
      cancelGraceMs: this.cancelGraceMs,
      queueNames: () => this.queueNames(),
      added: (count) => this.tableStats.added(count),
      expectDeadline: (at) => this.reaper.expect(at),
    });
    this.events = new TaskEvents(this.notifier);
    this.notifier.on(CHANNEL_DISPATCH, (queues) => this.dispatcher.workArrived(queues));
    this.notifier.on("reconnected", () => {
      // Back from an outage (or a dropped connection): heartbeat now, and give every replica time to do
      // the same before any lease is judged orphaned.
      this.meter.databaseReconnected();
      this.reaper.holdOff();
      void this.keeper.tick();
      this.dispatcher.workArrived(""); // notifications sent while the connection was down are lost
    });
    this.notifier.on(CHANNEL_CANCEL, (payload) => this.routeCancel(payload));
    this.notifier.on(CHANNEL_SCHEDULE, () => void this.scheduler.fire());
  }

  /** How often workers are asked to send a heartbeat. */
  get heartbeatIntervalMs(): number {
    return this.timings.heartbeatIntervalMs;
  }

  /** How long a worker may say nothing before its session ends. */
  get silenceLimitMs(): number {
    return this.timings.silentAfterMs;
  }

  async start(): Promise<void> {
    await this.notifier.start();
    this.keeper.start();
    this.reaper.start();
    for (const def of this.configSchedules) this.queueSettings(def.queue, `schedules.${def.name}.queue`);
    for (const source of ["config", "builtin"] as const) {
      await this.scheduler.replace(source, this.configSchedules.filter((d) => d.source === source));
    }
    this.scheduler.start();
    this.statsSampler.start();
    await this.systemWorker.start((hello, sink) => this.openSession(hello, sink));
  }

  /** True once stop() began: no new leases or worker sessions; health says NOT_SERVING. */
  get draining(): boolean {
    return this.stopping;
  }

  /** Aborts when stop() begins, for those who must hear of the drain at once (health watchers). */
  get drainSignal(): AbortSignal {
    return this.drain.signal;
  }

  /**
   * Graceful shutdown. No new leases or sessions from now on; running tasks have `graceMs` to finish
   * (their finishes, logs and status values are still taken, and sessions stay heartbeated); then the
   * workers still holding tasks are sent cancel(SHUTDOWN) and those tasks go back to PENDING with their
   * attempt given back. Finally the replica stops listening.
   */
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    this.stopping = true;
    this.drain.abort();
    this.dispatcher.stop();
    await this.reaper.stop();
    await this.scheduler.stop();
    await this.statsSampler.stop();
    const sessions = [...this.sessions.values()];
    const idle = Promise.all(sessions.map((s) => s.whenIdle()));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<"grace over">((resolve) => (timer = setTimeout(() => resolve("grace over"), opts.graceMs ?? 0)));
    const outcome = await Promise.race([idle.then(() => "idle" as const), graceOver]);
    clearTimeout(timer);
    if (outcome === "grace over") {
      const held = sessions.reduce((n, s) => n + s.heldLeases, 0);
      if (held > 0) this.log.warn({ held }, "shutdown grace period over; returning unfinished tasks to the queue");
      for (const s of sessions) s.cancelAll("shutdown");
    }
    this.keeper.stop();
    await Promise.all([...this.sessions.values()].map((s) => s.shutDown()));
    await this.notifier.stop();
  }

  /**
   * Ends what the reaper ends (expired deadlines, leases of lost sessions) now instead of at its next
   * sweep; for tests that move the clock, and for operators.
   */
  sweep(): Promise<SweepResult> {
    return this.reaper.sweep();
  }

  /** Fires every due schedule tick now instead of at the scheduler's next wake-up (tests move the clock). */
  fireSchedules(): Promise<FiredTick[]> {
    return this.scheduler.fire();
  }

  /** Every schedule with its next and last run. */
  listSchedules(): Promise<ScheduleRow[]> {
    return scheduleList(this.pool);
  }

  /** Every connected worker session, on every replica (those heartbeated within the stale limit). */
  listWorkers(): Promise<WorkerInfo[]> {
    return sessionList(this.pool, this.timings.staleAfterMs);
  }

  /** Worker sessions open on this replica (the server's own maintenance worker included). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Watch streams open on this replica (all served by its one LISTEN connection). */
  get watcherCount(): number {
    return this.events.watcherCount;
  }

  /** The defined queues, by name. */
  queueNames(): string[] {
    return Object.keys(this.queues).sort();
  }

  /**
   * Queues tasks; a batch is all or nothing. Calls arriving together share one statement (see
   * DispatchBatcher), each still answered on its own.
   */
  async dispatch(inputs: DispatchInput[]): Promise<DispatchResult[]> {
    const tasks = inputs.map((input, i) => this.withDefaults(input, inputs.length > 1 ? `tasks[${i}].` : ""));
    const results = await this.inserter.insert(tasks);
    const created = results.filter((r) => r.created).length;
    this.meter.dispatched(created);
    this.tableStats.added(created);
    return results;
  }

  private withDefaults(input: DispatchInput, fieldPrefix: string): NewTask {
    const queue = input.queue || "default";
    return newTaskOf(input, queue, this.queueSettings(queue, `${fieldPrefix}queue`), this.clock.now());
  }

  /** One task with its whole log, and why it waits when it is pending. */
  async status(id: string): Promise<TaskDetail> {
    const read = await taskGetWithLog(this.pool, id, 0);
    if (!read) throw notFound(`task ${id} not found`);
    await this.explainWaits([read.task]);
    return { ...read.task, log: read.log };
  }

  /** Sets why each pending task of `tasks` waits (engine/waiting.ts). */
  private explainWaits(tasks: TaskRecord[]): Promise<void> {
    return explainWaits(this.pool, tasks, { ...this.limits, staleAfterMs: this.timings.staleAfterMs }, this.clock.now());
  }

  watch(id: string, afterSeq: number, signal: AbortSignal): AsyncGenerator<WatchEvent> {
    return this.events.watch(this.pool, id, afterSeq, signal);
  }

  /**
   * Returns "canceled" for a task that was pending, "cancelling" for one whose worker was told to stop
   * (it ends CANCELED when the handler returns, when the grace period ends, or when the worker is lost).
   */
  async interrupt(id: string, reason: string): Promise<"canceled" | "cancelling"> {
    const error = reason ? `interrupted: ${reason}` : "interrupted";
    const done = await taskInterrupt(this.pool, { id, reason: error, graceMs: this.cancelGraceMs }, this.clock.now());
    if (done?.deadlineAt) this.reaper.expect(done.deadlineAt);
    if (done?.was === "pending") return "canceled";
    if (done) return "cancelling";
    const task = await taskGet(this.pool, id);
    if (!task) throw notFound(`task ${id} not found`);
    throw failedPrecondition(`task ${id} already finished as ${task.status}`);
  }

  /**
   * Dispatches a fresh task like a FAILED, CANCELED or STUCK one, linked both ways; a task retried
   * before returns that retry (created false). Audited as `actor`'s.
   */
  retry(id: string, actor: string): Promise<DispatchResult> {
    return this.operatorActions.retry(id, actor);
  }

  /** Interrupts the pending and running tasks a filter matches, in batches (operator-actions.ts); audited. */
  interruptMany(req: BulkRequest & { reason: string }): Promise<BulkResult> {
    return this.operatorActions.interruptMany(req);
  }

  /** Retries the FAILED, CANCELED and STUCK tasks a filter matches that were not retried yet, in batches; audited. */
  retryMany(req: BulkRequest): Promise<BulkResult> {
    return this.operatorActions.retryMany(req);
  }

  /** One page of the audit log, newest first, after the entry `beforeId` (null: from the newest). */
  listAudit(q: { limit: number; beforeId: string | null }): Promise<AuditEntry[]> {
    return this.operatorActions.listAudit(q);
  }

  /** Every defined queue with its settings and what it holds now, and the global limit. */
  /** How many tasks are in each status (each count stops after COUNT_CAP). */
  countTasks(q: CountQuery): Promise<StatusCount[]> {
    return taskCountsByStatus(this.pool, q);
  }

  /** The samples of the last `windowMs`, oldest first, of one queue or of all; and how often they are taken. */
  async stats(windowMs: number, queue: string | null): Promise<{ samples: StatsSample[]; intervalMs: number }> {
    const since = new Date(this.clock.now().getTime() - windowMs);
    return { samples: await queueStatsList(this.pool, since, queue), intervalMs: this.statsSampler.intervalMs };
  }

  /** Samples the queues now (unless a sample was written within half an interval); for tests and operators. */
  sampleStats(): Promise<boolean> {
    return this.statsSampler.sample();
  }

  async listQueues(): Promise<{ queues: QueueInfo[]; globalMaxWorkers: number | null; running: number }> {
    const counts = await queueCountsList(this.pool, this.clock.now(), this.limits);
    const empty = (name: string): QueueCounts => ({
      pending: 0,
      running: 0,
      paused: false,
      oldestDueMs: 0,
      keyCount: 0,
      keys: [],
      heldByKeyLimit: 0,
      heldByRateLimit: 0,
      rateTokens: this.queues[name].rateLimit ? this.queues[name].rateLimit.burst : null,
    });
    const queues = this.queueNames().map((name): QueueInfo => ({ name, ...this.queues[name], ...(counts.get(name) ?? empty(name)) }));
    const running = [...counts.values()].reduce((n, c) => n + c.running, 0);
    return { queues, globalMaxWorkers: this.globalMaxWorkers, running };
  }

  /** Pauses or resumes a queue for every replica; tasks already running go on. */
  async setQueuePaused(name: string, paused: boolean): Promise<QueueInfo> {
    this.queueSettings(name, "queue");
    await queuePausedSet(this.pool, name, paused, this.clock.now());
    return (await this.listQueues()).queues.find((q) => q.name === name)!;
  }

  /** A defined queue's settings; INVALID_ARGUMENT naming the queue and the defined ones otherwise. */
  private queueSettings(name: string, field: string): QueueSettings {
    const settings = this.queues[name];
    if (!settings) throw invalidArgument(`${field}: queue "${name}" is not defined (defined: ${this.queueNames().join(", ")})`);
    return settings;
  }

  /** A page of the live queue; pending tasks say why they wait. */
  async listActive(q: ActiveQuery) {
    const page = await taskListActive(this.pool, q);
    await this.explainWaits(page.tasks);
    return page;
  }

  listHistory(q: HistoryQuery) {
    return taskListHistory(this.pool, q);
  }

  /** Opens a worker session; the caller must close it when the worker's stream ends. */
  async openSession(hello: WorkerHello, sink: SessionSink): Promise<WorkerSession> {
    if (this.stopping) throw unavailable("this server is shutting down; connect to another replica");
    for (const q of hello.queues) this.queueSettings(q, "hello.queues");
    if (hello.schedules.length > 0) {
      this.queueSettings(SCHEDULED_QUEUE, "hello.task_types.schedule");
      const kept = await this.scheduler.declare(hello.schedules.map((s) => scheduleDef({ name: s.type, ...s }, "worker")));
      if (kept.length > 0) {
        this.log.warn({ worker: hello.workerName, schedules: kept }, "a worker's schedules were ignored: config or built-in schedules hold those names");
      }
    }
    const session = new WorkerSession(
      {
        db: this.pool,
        clock: this.clock,
        log: this.log,
        replicaId: this.replicaId,
        dispatcher: this.dispatcher,
        finisher: this.finisher,
        wakeOnFree: this.wakeOnFree,
        meter: this.meter,
        leaseValidityMs: this.timings.leaseValidityMs,
        stopping: () => this.stopping,
        onLease: (lease) => this.reaper.expect(lease.deadlineAt),
        onDeadline: (at) => this.reaper.expect(at),
        onClose: (s) => this.sessions.delete(s.id),
      },
      hello,
      sink,
    );
    this.sessions.set(session.id, session);
    try {
      await session.open();
    } catch (err) {
      this.sessions.delete(session.id);
      throw err;
    }
    return session;
  }

  /** Wakes the lease dispatcher, for instance after a test moved the clock past a retry delay. */
  poke(): void {
    this.dispatcher.workArrived("");
  }

  private routeCancel(payload: string): void {
    const [sessionId, taskId, leaseToken, reason] = payload.split(":");
    this.sessions.get(sessionId)?.cancel(taskId, leaseToken, reason as CancelReason);
  }
}
