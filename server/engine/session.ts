/**
 * One worker's session, as the engine sees it. The RPC layer owns the stream; this owns the session's
 * database row, its credits, and the leases it holds.
 *
 * States: open (row written, slot registered with the dispatcher) → closed (slot removed, every lease
 * still held released to the queue, row deleted). Messages after close are refused. A lease is held
 * from delivery until a finish for it is accepted or refused; refused updates change nothing. A lease
 * the reaper ended meanwhile (timeout, grace period) is still "held" here until the worker finishes
 * it, but its token no longer matches the row, so that finish is refused by the database.
 *
 * Liveness: the engine heartbeats the row while the session is open and ends the session (through the
 * sink) when the worker has been silent too long; a row reaped while the session lived is restored.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "./clock.js";
import type { LeaseDispatcher, SessionSlot } from "./dispatcher.js";
import type { Meter } from "./meter.js";
import type { FinishBatcher } from "./finisher.js";
import type { Db } from "./sql/db.js";
import { taskLeaseRelease, type WakeOnFree } from "./sql/lease.js";
import { sessionDelete, sessionUpsert, type SessionRow } from "./sql/sessions.js";
import { taskLogAppend, taskStatusValueSet } from "./sql/updates.js";
import type { CancelReason, FinishResult, JsonObject, JsonValue, LeasedTask, Outcome, WorkerHello } from "./types.js";

/** Where the session's server-to-worker messages go (the RPC layer's stream). */
export interface SessionSink {
  lease(task: LeasedTask): void;
  cancel(taskId: string, leaseToken: string, reason: CancelReason): void;
  /** The engine gave up on the worker (it went silent): end the stream; the session closes with it. */
  end(reason: string): void;
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
  /** A lease was handed to the worker (the reaper wants its deadline). */
  onLease(lease: LeasedTask): void;
  onClose(session: WorkerSession): void;
}

/** Credits a session may hold at once; a worker asking for more is capped, not refused. */
export const MAX_CREDITS = 10_000;

export class WorkerSession {
  readonly id = randomUUID();
  /** Task id → the lease this session holds, and when it was delivered (real time, for run durations). */
  private readonly leases = new Map<string, { token: string; deliveredAt: number }>();
  private readonly slot: SessionSlot;
  private readonly row: SessionRow;
  private closed = false;
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
      connectedAt: deps.clock.now(),
    };
  }

  async open(): Promise<void> {
    await sessionUpsert(this.deps.db, this.row);
    this.deps.dispatcher.add(this.slot);
  }

  /** Writes the session's row again after a reaper removed it while the session was alive. */
  async restore(): Promise<void> {
    if (!this.closed) await sessionUpsert(this.deps.db, this.row);
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
    return this.closed;
  }

  get heldLeases(): number {
    return this.leases.size;
  }

  addCredits(count: number): void {
    if (this.closed) return;
    this.slot.credits = Math.min(MAX_CREDITS, this.slot.credits + count);
    this.deps.dispatcher.wake();
  }

  private deliver(lease: LeasedTask): void {
    this.leases.set(lease.id, { token: lease.leaseToken, deliveredAt: performance.now() });
    this.deps.meter.leased(this.deps.clock.now().getTime() - lease.dueAt.getTime());
    this.deps.onLease(lease);
    this.sink.lease(lease);
  }

  private holds(taskId: string, leaseToken: string): boolean {
    return !this.closed && this.leases.get(taskId)?.token === leaseToken;
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
    const status = await this.deps.finisher.finish({ id: taskId, leaseToken, outcome });
    const lease = this.leases.get(taskId);
    if (lease?.token === leaseToken) this.leases.delete(taskId);
    if (this.leases.size === 0) this.idleWaiters.splice(0).forEach((resolve) => resolve());
    if (status === null) return { accepted: false, reason: "the lease is no longer valid" };
    this.deps.meter.attemptEnded(status, "finish", lease ? performance.now() - lease.deliveredAt : null);
    return { accepted: true, status };
  }

  /** Told by the engine that a task it holds must stop. */
  cancel(taskId: string, leaseToken: string, reason: CancelReason): void {
    if (this.holds(taskId, leaseToken)) this.sink.cancel(taskId, leaseToken, reason);
  }

  /** Resolves when the session holds no lease (at once if it holds none). */
  whenIdle(): Promise<void> {
    if (this.leases.size === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Tells the worker to stop every task it still holds (the server is shutting down). */
  cancelAll(reason: CancelReason): void {
    for (const [taskId, { token }] of this.leases) this.sink.cancel(taskId, token, reason);
  }

  /** Asks the RPC layer to end the stream (which then closes the session). */
  end(reason: string): void {
    if (this.closed) return;
    this.deps.log.warn({ session: this.id, reason }, "ending worker session");
    this.sink.end(reason);
  }

  /**
   * Ends the session: the leases it still holds go back to the queue (or end STUCK/CANCELED). With
   * `uncount` (the server is shutting down, not the worker's fault) their attempts are given back.
   */
  async close(reason: string, opts: { uncount?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const { db, clock, dispatcher, log } = this.deps;
    dispatcher.remove(this.id);
    this.deps.onClose(this);
    const held = [...this.leases].map(([id, { token }]) => ({ id, leaseToken: token }));
    this.leases.clear();
    this.idleWaiters.splice(0).forEach((resolve) => resolve());
    try {
      if (held.length > 0) {
        const wakeOnFree = this.deps.wakeOnFree;
        const released = await taskLeaseRelease(db, held, { uncount: opts.uncount ?? false, error: reason, wakeOnFree }, clock.now());
        for (const to of released.values()) this.deps.meter.attemptEnded(to, opts.uncount ? "shutdown" : "lost", null);
        log.info({ session: this.id, released: released.size }, "worker session closed; leases released");
      }
      await sessionDelete(db, this.id);
    } catch (err) {
      // The row stays; the reaper recovers its leases once its heartbeat goes stale.
      log.error({ err, session: this.id }, "closing worker session failed");
    }
  }
}
