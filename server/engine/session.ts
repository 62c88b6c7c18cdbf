/**
 * One worker's session, as the engine sees it. The RPC layer owns the stream; this owns the session's
 * database row, its credits, and the leases it holds.
 *
 * States: open (row written, slot registered with the dispatcher) → closed (slot removed, every lease
 * still held released to the queue, row deleted). Messages after close are refused. A lease is held
 * from delivery until a finish for it is accepted or refused; refused updates change nothing.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "./clock.js";
import type { LeaseDispatcher, SessionSlot } from "./dispatcher.js";
import type { FinishBatcher } from "./finisher.js";
import type { Db } from "./sql/db.js";
import { taskLeaseRelease } from "./sql/lease.js";
import { sessionDelete, sessionInsert } from "./sql/sessions.js";
import { taskLogAppend, taskStatusValueSet } from "./sql/updates.js";
import type { CancelReason, FinishResult, JsonValue, LeasedTask, Outcome, WorkerHello } from "./types.js";

/** Where the session's server-to-worker messages go (the RPC layer's stream). */
export interface SessionSink {
  lease(task: LeasedTask): void;
  cancel(taskId: string, leaseToken: string, reason: CancelReason): void;
}

export interface SessionDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  replicaId: string;
  dispatcher: LeaseDispatcher;
  finisher: FinishBatcher;
  defaultTimeoutMs: number;
  onClose(session: WorkerSession): void;
}

/** Credits a session may hold at once; a worker asking for more is capped, not refused. */
export const MAX_CREDITS = 10_000;

export class WorkerSession {
  readonly id = randomUUID();
  private readonly leases = new Map<string, string>(); // task id → lease token
  private readonly slot: SessionSlot;
  private closed = false;

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
      deliver: (lease) => this.deliver(lease),
    };
  }

  async open(): Promise<void> {
    const { db, clock, replicaId, dispatcher } = this.deps;
    await sessionInsert(
      db,
      { id: this.id, replicaId, workerName: this.hello.workerName, taskTypes: this.slot.types, queues: this.hello.queues },
      clock.now(),
    );
    dispatcher.add(this.slot);
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
    this.leases.set(lease.id, lease.leaseToken);
    const timeoutMs = lease.timeoutMs ?? this.hello.taskTypes.get(lease.type) ?? this.deps.defaultTimeoutMs;
    this.sink.lease({ ...lease, timeoutMs });
  }

  private holds(taskId: string, leaseToken: string): boolean {
    return !this.closed && this.leases.get(taskId) === leaseToken;
  }

  /** Appends a log step; false when this session does not hold that lease (nothing changes). */
  async log(taskId: string, leaseToken: string, message: string): Promise<boolean> {
    if (!this.holds(taskId, leaseToken)) return false;
    const seq = await taskLogAppend(this.deps.db, { id: taskId, leaseToken, message }, this.deps.clock.now());
    return seq !== null;
  }

  async setStatusValue(taskId: string, leaseToken: string, key: string, value: JsonValue): Promise<boolean> {
    if (!this.holds(taskId, leaseToken)) return false;
    return taskStatusValueSet(this.deps.db, { id: taskId, leaseToken, key, value });
  }

  async finish(taskId: string, leaseToken: string, outcome: Outcome): Promise<FinishResult> {
    if (!this.holds(taskId, leaseToken)) return { accepted: false, reason: "this session does not hold that lease" };
    const status = await this.deps.finisher.finish({ id: taskId, leaseToken, outcome });
    if (this.leases.get(taskId) === leaseToken) this.leases.delete(taskId);
    if (status === null) return { accepted: false, reason: "the lease is no longer valid" };
    return { accepted: true, status };
  }

  /** Told by the engine that a task it holds must stop. */
  cancel(taskId: string, leaseToken: string, reason: CancelReason): void {
    if (this.holds(taskId, leaseToken)) this.sink.cancel(taskId, leaseToken, reason);
  }

  /** Ends the session: the leases it still holds go back to the queue (or end STUCK/CANCELED). */
  async close(reason: string): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const { db, clock, dispatcher, log } = this.deps;
    dispatcher.remove(this.id);
    this.deps.onClose(this);
    const held = [...this.leases].map(([id, leaseToken]) => ({ id, leaseToken }));
    this.leases.clear();
    try {
      if (held.length > 0) {
        const released = await taskLeaseRelease(db, held, { uncount: false, error: reason }, clock.now());
        log.info({ session: this.id, released: released.size }, "worker session closed; leases released");
      }
      await sessionDelete(db, this.id);
    } catch (err) {
      // The row stays; the reaper recovers its leases once its heartbeat goes stale.
      log.error({ err, session: this.id }, "closing worker session failed");
    }
  }
}
