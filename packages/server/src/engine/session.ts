/**
 * One worker's session, as the engine sees it. The RPC layer owns the stream; this owns the session's
 * database row, its credits, and the leases it holds.
 *
 * States (`mode`):
 *   opening → the row is being written; the replica's heartbeat leaves the session alone
 *   open    → row written, slot registered with the dispatcher, heartbeated with the replica's others
 *   closed  → slot removed, every lease still held released to the queue, row deleted. Messages after
 *             close are refused. Closing is final: a session that lost its row or its leases ends,
 *             and its worker connects again as a new session.
 *
 * A lease is held from delivery until a finish for it is accepted or refused, or the reaper says its
 * attempt timed out; refused updates change nothing. A lease the reaper ended without saying so (an
 * interrupt's grace period ran out) is still "held" here until the worker finishes it, but its token no
 * longer matches the row, so that finish is refused by the database.
 *
 * Lease validity: the session's leases are good until `validUntil` (real time), which is the moment the
 * replica sent the last heartbeat the database confirmed, plus the lease validity (settings.ts). Past it,
 * another replica's reaper may be about to recover them, so no lease is delivered any more and the
 * session ends; its worker, told the same deadline through its heartbeat acks, has already stopped.
 *
 * Liveness: the engine ends the session (end(): the sink is told, and the session closes) when the
 * worker has been silent too long, reads nothing for too long, or its row or validity is gone.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "./clock.js";
import type { LeaseDispatcher, SessionSlot } from "./dispatcher.js";
import type { Meter } from "./meter.js";
import type { FinishBatcher } from "./finisher.js";
import type { Db } from "./sql/db.js";
import { retryWhileUnreachable } from "./errors.js";
import { taskLeaseRelease } from "./sql/lease.js";
import { sessionDelete, sessionUpsert } from "./sql/sessions.js";
import { taskDeadlineExtend, taskLogAppend, taskStatusValueSet } from "./sql/updates.js";
import { finishTraced, leaseSpanRecord } from "./tracing.js";
import type {
  CancelReason,
  FinishedAs,
  FinishResult,
  JsonObject,
  JsonValue,
  LeasedTask,
  Outcome,
  SessionRow,
  TraceContext,
  WakeOnFree,
  WorkerHello,
} from "./types.js";

/** Where the session's server-to-worker messages go (the RPC layer's stream). */
export interface SessionSink {
  lease(task: LeasedTask): void;
  cancel(taskId: string, leaseToken: string, reason: CancelReason): void;
  /**
   * The engine ended the session: end the stream, at once when the worker went silent or the session's
   * leases lapsed, or after what is queued (the cancels) when the server shuts down.
   */
  end(reason: string, how: "now" | "after_queued"): void;
  /** How long the worker has left the replies waiting unread (0 while it keeps up). */
  stalledForMs(): number;
}

export interface SessionDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  replicaId: string;
  dispatcher: LeaseDispatcher;
  finisher: FinishBatcher;
  /** Queues whose freed slots wake the dispatchers (see WakeOnFree). */
  wakeOnFree: WakeOnFree;
  meter: Meter;
  /** How long leases stay valid after a heartbeat the database confirmed (settings.ts). */
  leaseValidityMs: number;
  /** The engine is stopping: a close that cannot reach the database leaves the leases to the reapers. */
  stopping(): boolean;
  /** A lease was handed to the worker (the reaper wants its deadline). */
  onLease(lease: LeasedTask): void;
  /** An attempt's deadline moved later (the reaper wants it). */
  onDeadline(at: Date): void;
  onClose(session: WorkerSession): void;
}

/** Credits a session may hold at once; a worker asking for more is capped, not refused. */
const MAX_CREDITS = 10_000;

export class WorkerSession {
  readonly id = randomUUID();
  /**
   * Task id → the lease this session holds, when it was delivered (real time, for run durations), and the
   * trace context the worker was given with it (the parent of the finish's span; null: untraced).
   */
  private readonly leases = new Map<string, { token: string; deliveredAt: number; trace: TraceContext | null }>();
  private readonly slot: SessionSlot;
  private readonly row: SessionRow;
  private mode: "opening" | "open" | "closed" = "opening";
  /** Until when (performance.now()) the session's leases are valid; see the header. */
  private validUntil = 0;
  /** The latest deadline the worker was told (performance.now()): it may run its tasks until then. */
  private promisedUntil = 0;
  private lastHeardAt = performance.now();
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly deps: SessionDeps,
    readonly hello: WorkerHello,
    private readonly sink: SessionSink,
  ) {
    this.slot = {
      id: this.id,
      types: [...hello.taskTypes.keys()],
      queues: hello.queues.length > 0 ? hello.queues : null,
      credits: 0,
      servedAt: 0,
      deliver: (lease) => this.deliver(lease),
    };
    this.row = {
      id: this.id,
      replicaId: deps.replicaId,
      workerName: hello.workerName,
      taskTypes: this.slot.types,
      queues: hello.queues,
      typeTimeouts: Object.fromEntries([...hello.taskTypes].filter(([, ms]) => ms !== null)) as JsonObject,
      concurrency: hello.concurrency,
      connectedAt: deps.clock.now(),
    };
  }

  async open(): Promise<void> {
    const sentAt = performance.now();
    await sessionUpsert(this.deps.db, this.row);
    if (this.mode !== "opening") return;
    this.validUntil = sentAt + this.deps.leaseValidityMs;
    this.mode = "open";
    this.deps.dispatcher.add(this.slot);
  }

  /**
   * The database confirmed the session's row in a statement sent at `sentAt` (performance.now()). Once
   * the leases lapsed they stay lapsed: the worker has let them go, and a reaper may be taking them.
   */
  confirmed(sentAt: number): void {
    if (this.mode === "open" && performance.now() >= this.validUntil) return;
    this.validUntil = Math.max(this.validUntil, sentAt + this.deps.leaseValidityMs);
  }

  /** How much longer the session's leases stay valid, in whole real milliseconds (0 once they lapsed). */
  get validForMs(): number {
    return this.mode === "open" ? Math.max(0, Math.floor(this.validUntil - performance.now())) : 0;
  }

  /**
   * The validity to tell the worker (in a welcome or a heartbeat ack), remembered as promised: a
   * session the engine ends keeps its leases until the worker's deadline has passed.
   */
  promiseValidity(): number {
    const ms = this.validForMs;
    this.promisedUntil = Math.max(this.promisedUntil, performance.now() + ms);
    return ms;
  }

  /** True once the row is written and until the session closes: the replica heartbeats it. */
  get isOpen(): boolean {
    return this.mode === "open";
  }

  /** The worker said something (any message counts as a sign of life). */
  touch(): void {
    this.lastHeardAt = performance.now();
  }

  /** How long since the worker last said anything, in real milliseconds. */
  get silentForMs(): number {
    return performance.now() - this.lastHeardAt;
  }

  get isClosed(): boolean {
    return this.mode === "closed";
  }

  /** How long the worker has left the replies waiting unread, in real milliseconds. */
  get stalledForMs(): number {
    return this.sink.stalledForMs();
  }

  get heldLeases(): number {
    return this.leases.size;
  }

  /** Credits granted and not yet used. */
  get credits(): number {
    return this.slot.credits;
  }

  addCredits(count: number): void {
    if (this.mode === "closed") return;
    this.slot.credits = Math.min(MAX_CREDITS, this.slot.credits + count);
    this.deps.dispatcher.wake();
  }

  private deliver(lease: LeasedTask): boolean {
    if (this.mode !== "open") return false;
    if (this.validForMs === 0) {
      // This replica stalled past the session's validity (a pause, a slow database link): its leases may
      // be recovered elsewhere already, and this one must not reach a handler late.
      this.end("the session's leases lapsed: the database has not confirmed it in time");
      return false;
    }
    // An untraced lease (nearly all, without an OpenTelemetry SDK in the caller) costs nothing here.
    const trace =
      lease.trace &&
      leaseSpanRecord(lease.trace, {
        "taskq.task.id": lease.id,
        "taskq.task.type": lease.type,
        "taskq.queue": lease.queue,
        "taskq.attempt": lease.attempt,
        "taskq.worker": this.hello.workerName,
      });
    this.leases.set(lease.id, { token: lease.leaseToken, deliveredAt: performance.now(), trace });
    this.deps.meter.leased(this.deps.clock.now().getTime() - lease.dueAtMs);
    this.deps.onLease(lease);
    this.sink.lease(trace === lease.trace ? lease : { ...lease, trace });
    return true;
  }

  private holds(taskId: string, leaseToken: string): boolean {
    return this.mode !== "closed" && this.leases.get(taskId)?.token === leaseToken;
  }

  /** Appends a log step; false when this session does not hold that lease (nothing changes). */
  async log(taskId: string, leaseToken: string, message: string): Promise<boolean> {
    if (!this.holds(taskId, leaseToken)) return false;
    const seq = await taskLogAppend(this.deps.db, { id: taskId, leaseToken, message }, this.deps.clock.now());
    return seq !== null;
  }

  /** Sets a status value: "set", "not_held", or "full" (the task has `maxKeys` other keys already). */
  async setStatusValue(taskId: string, leaseToken: string, key: string, value: JsonValue, maxKeys: number): Promise<"set" | "not_held" | "full"> {
    if (!this.holds(taskId, leaseToken)) return "not_held";
    return taskStatusValueSet(this.deps.db, { id: taskId, leaseToken, key, value, maxKeys });
  }

  async finish(taskId: string, leaseToken: string, outcome: Outcome): Promise<FinishResult> {
    if (!this.holds(taskId, leaseToken)) return { accepted: false, reason: "this session does not hold that lease" };
    const lease = this.leases.get(taskId);
    const status = lease?.trace
      ? await this.finishTraced(taskId, outcome.kind, () => this.deps.finisher.finish({ id: taskId, leaseToken, outcome }))
      : await this.deps.finisher.finish({ id: taskId, leaseToken, outcome });
    this.forget(taskId, leaseToken);
    if (status === null) return { accepted: false, reason: "the lease is no longer valid" };
    this.deps.meter.attemptEnded(status, "finish", lease ? performance.now() - lease.deliveredAt : null);
    return { accepted: true, status };
  }

  /** Records an outcome (`write`) in a taskq.finish span when the lease is traced. */
  private finishTraced(taskId: string, outcome: string, write: () => Promise<FinishedAs | null>): Promise<FinishedAs | null> {
    const trace = this.leases.get(taskId)?.trace ?? null;
    return finishTraced(trace, { "taskq.task.id": taskId, "taskq.outcome": outcome, "taskq.worker": this.hello.workerName }, write);
  }

  /**
   * The worker gives a lease back without spending its attempt: declined unrun (due again at once), or
   * snoozed by its handler (due after `delayMs`). A task being interrupted ends CANCELED.
   */
  async giveBack(taskId: string, leaseToken: string, how: "declined" | "snoozed", delayMs = 0): Promise<FinishResult> {
    if (!this.holds(taskId, leaseToken)) return { accepted: false, reason: "this session does not hold that lease" };
    const { db, clock, wakeOnFree, meter } = this.deps;
    const status = await this.finishTraced(taskId, how, async () => {
      const released = await taskLeaseRelease(db, [{ id: taskId, leaseToken }], { how, error: "", wakeOnFree, delayMs }, clock.now());
      return released.get(taskId) ?? null;
    });
    this.forget(taskId, leaseToken);
    if (status === null) return { accepted: false, reason: "the lease is no longer valid" };
    meter.attemptEnded(status, how, null);
    return { accepted: true, status };
  }

  /** Gives a running attempt at least `ms` more from now; false when the lease is not held or the task is being interrupted. */
  async extendDeadline(taskId: string, leaseToken: string, ms: number): Promise<boolean> {
    if (!this.holds(taskId, leaseToken)) return false;
    const deadline = await taskDeadlineExtend(this.deps.db, { id: taskId, leaseToken, ms }, this.deps.clock.now());
    if (deadline) this.deps.onDeadline(deadline);
    return deadline !== null;
  }

  /** Told by the engine that a task it holds must stop. */
  cancel(taskId: string, leaseToken: string, reason: CancelReason): void {
    if (!this.holds(taskId, leaseToken)) return;
    this.sink.cancel(taskId, leaseToken, reason);
    // The attempt has ended already: a finish for it can only be refused.
    if (reason === "timed_out") this.forget(taskId, leaseToken);
  }

  /** The session no longer holds that lease. */
  private forget(taskId: string, leaseToken: string): void {
    if (this.leases.get(taskId)?.token === leaseToken) this.leases.delete(taskId);
    if (this.leases.size === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  /** Resolves when the session holds no lease (at once if it holds none). */
  whenIdle(): Promise<void> {
    if (this.leases.size === 0 || this.mode === "closed") return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Tells the worker to stop every task it still holds (the server is shutting down). */
  cancelAll(reason: CancelReason): void {
    for (const [taskId, { token }] of this.leases) this.sink.cancel(taskId, token, reason);
  }

  /**
   * Ends the session from the engine's side: the sink ends the stream, and the session closes now,
   * whatever state the stream is in (a stream stuck writing to a worker that reads nothing never ends
   * by itself).
   */
  end(reason: string): void {
    if (this.mode === "closed") return;
    this.deps.log.warn({ session: this.id, reason }, "ending worker session");
    this.sink.end(reason, "now");
    void this.close(reason, { afterPromises: true });
  }

  /**
   * Ends the session because the server is shutting down: the worker hears the reason after any cancel
   * already sent, and the leases still held go back with their attempts given back.
   */
  shutDown(): Promise<void> {
    if (this.mode !== "closed") this.sink.end("the server is shutting down; connect to another replica", "after_queued");
    return this.close("server shutting down", { uncount: true });
  }

  /**
   * Ends the session: the leases it still holds go back to the queue (or end STUCK/CANCELED). With
   * `uncount` (the server is shutting down, not the worker's fault) their attempts are given back.
   * While the database cannot be reached this keeps trying (its leases go back as soon as it answers,
   * before any reaper, which holds off after an outage, would take them) until the engine stops; then
   * the row, no longer heartbeated, goes stale and a reaper recovers the leases.
   *
   * `afterPromises`: the worker may not know the session ended (the engine ended it, or the stream
   * broke in a way only this side saw: a reset by something in between, a half-open connection, a
   * worker that stopped reading): its leases go back only once the deadline it was told has passed, when
   * its handlers have been aborted. Only a stream the worker closed itself returns them at once.
   */
  async close(reason: string, opts: { uncount?: boolean; afterPromises?: boolean } = {}): Promise<void> {
    if (this.mode === "closed") return;
    this.mode = "closed";
    const { db, clock, dispatcher, log } = this.deps;
    dispatcher.remove(this.id);
    this.deps.onClose(this);
    const held = [...this.leases].map(([id, { token }]) => ({ id, leaseToken: token }));
    this.leases.clear();
    for (const resolve of this.idleWaiters.splice(0)) resolve();
    const untilPromiseEnds = this.promisedUntil - performance.now();
    if (opts.afterPromises && held.length > 0 && untilPromiseEnds > 0) {
      // Not keeping the process alive for it: a replica that exits first leaves the leases to the reapers.
      await new Promise((resolve) => setTimeout(resolve, untilPromiseEnds + 1).unref());
    }
    const release = async () => {
      if (held.length > 0) {
        const wakeOnFree = this.deps.wakeOnFree;
        const released = await taskLeaseRelease(db, held, { how: opts.uncount ? "shutdown" : "lost", error: reason, wakeOnFree }, clock.now());
        held.length = 0; // written: a retry of the row's delete must not release again
        for (const to of released.values()) this.deps.meter.attemptEnded(to, opts.uncount ? "shutdown" : "lost", null);
        log.info({ session: this.id, released: released.size }, "worker session closed; leases released");
      }
      await sessionDelete(db, this.id);
    };
    try {
      await retryWhileUnreachable(release, {
        minMs: 50,
        maxMs: 1_000,
        giveUp: () => this.deps.stopping(),
        onRetry: (err, retryInMs) => log.warn({ session: this.id, err: err.message, retryInMs }, "closing worker session: database unreachable; trying again"),
      });
    } catch (err) {
      // The row stays, no longer heartbeated; a reaper recovers its leases once it goes stale.
      log.error({ err, session: this.id }, "closing worker session failed; its leases are left to the reapers");
    }
  }
}
