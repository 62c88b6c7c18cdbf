/**
 * What operators do to many tasks, or to finished ones: Retry, InterruptMany, RetryMany, and the audit
 * log that records each of them (ListAudit).
 *
 * A bulk action works in batches of BULK_BATCH_SIZE tasks, one statement each, each statement its own
 * transaction: however many tasks a filter matches, no transaction holds more than a batch of row locks,
 * or for longer than one statement. A batch picks the matching rows in id order `for update skip locked`,
 * so it never waits for a lease or a finish in flight (nor forms a deadlock with one); the rows it
 * changes no longer match (interrupted tasks are canceled or cancelling, retried ones have
 * `retried_as`), so the next batch picks the next ones without a cursor. Batches go on until the call's
 * limit is reached or a batch finds fewer rows than it asked for; then one more query says whether
 * matching tasks remain (beyond the limit, or skipped while locked), for the caller to call again.
 *
 * The audit row is written by the first batch that changes something and counted up by each later one,
 * in the same statements, so it always says what was done, even when a call fails half-way.
 */
import type pg from "pg";
import { failedPrecondition, notFound } from "./errors.js";
import type { Meter } from "./meter.js";
import { auditList } from "./sql/audit.js";
import { taskCountMatching, taskInterruptMatching } from "./sql/interrupt.js";
import { historyCountRetriable, RETRIABLE_STATUSES, taskRetry, taskRetryMatching } from "./sql/retry-task.js";
import type { AuditEntry, AuditRecord, BulkRequest, BulkResult, DispatchResult, TaskFilter } from "./types.js";
import type { Clock } from "./clock.js";

/** Tasks per statement of a bulk action. */
const BULK_BATCH_SIZE = 500;
/** The most tasks one InterruptMany or RetryMany call acts on, and its default limit. */
export const BULK_LIMIT_MAX = 10_000;

/** The statuses InterruptMany takes: a cancelling task is interrupted already. */
const INTERRUPTIBLE_STATUSES = ["pending", "running"] as const;

const REFUSAL = "only FAILED, CANCELED or STUCK tasks can be retried";

export interface OperatorActionsDeps {
  pool: pg.Pool;
  clock: Clock;
  meter: Meter;
  cancelGraceMs: number;
  /** The queues the server defines: a task is retried only into one of them. */
  queueNames(): string[];
  /** Tasks were inserted (for the planner's statistics). */
  added(count: number): void;
  /** A running task's deadline moved to this time (the reaper should sweep then). */
  expectDeadline(at: Date): void;
}

export class OperatorActions {
  constructor(private readonly deps: OperatorActionsDeps) {}

  /**
   * Dispatches a fresh task with the settings of a FAILED, CANCELED or STUCK one (sql/retry-task.ts);
   * a task retried before returns that retry, created false. FAILED_PRECONDITION for a task that is still
   * active or COMPLETED, or whose queue is no longer defined; NOT_FOUND for an unknown one.
   */
  async retry(id: string, actor: string): Promise<DispatchResult> {
    const { pool, clock } = this.deps;
    const found = await taskRetry(pool, { id, queues: this.deps.queueNames(), actor }, clock.now());
    if (!found) throw notFound(`task ${id} not found`);
    if (found.createdId) {
      this.inserted(1);
      return { id: found.createdId, created: true };
    }
    if (found.retriedAs) return { id: found.retriedAs, created: false };
    if (!(RETRIABLE_STATUSES as readonly string[]).includes(found.status)) throw failedPrecondition(`task ${id} is ${found.status}; ${REFUSAL}`);
    throw failedPrecondition(`task ${id} was in queue "${found.queue}", which is no longer defined; it cannot be retried`);
  }

  /**
   * Interrupts the pending and running tasks `req.filter` matches, as Interrupt does each: pending ones
   * CANCELED, running ones CANCELLING with a cancel sent to their workers. `reason` becomes their error.
   */
  async interruptMany(req: BulkRequest & { reason: string }): Promise<BulkResult> {
    const { pool, clock, cancelGraceMs } = this.deps;
    const filter = withStatuses(req.filter, INTERRUPTIBLE_STATUSES);
    const count = (limit: number) => taskCountMatching(pool, filter, limit);
    if (req.dryRun) return dryRun(req.limit, count);
    const error = req.reason ? `interrupted: ${req.reason}` : "interrupted";
    const audit = this.auditOf(req, "interrupt_many", { reason: req.reason });
    return inBatches(req.limit, count, async (limit) => {
      const done = await taskInterruptMatching(pool, { filter, limit, reason: error, graceMs: cancelGraceMs, audit }, clock.now());
      if (done.deadlineAt) this.deps.expectDeadline(done.deadlineAt);
      audit.id = done.auditId;
      return done.count;
    });
  }

  /** Retries the FAILED, CANCELED and STUCK tasks `req.filter` matches that were not retried yet. */
  async retryMany(req: BulkRequest): Promise<BulkResult> {
    const { pool, clock } = this.deps;
    const filter = withStatuses(req.filter, RETRIABLE_STATUSES);
    const queues = this.deps.queueNames();
    const count = (limit: number) => historyCountRetriable(pool, filter, queues, limit);
    if (req.dryRun) return dryRun(req.limit, count);
    const audit = this.auditOf(req, "retry_many", {});
    return inBatches(req.limit, count, async (limit) => {
      const done = await taskRetryMatching(pool, { filter, queues, limit, audit }, clock.now());
      this.inserted(done.count);
      audit.id = done.auditId;
      return done.count;
    });
  }

  /** One page of the audit log, newest first, after the entry `beforeId` (null: from the newest). */
  listAudit(q: { limit: number; beforeId: string | null }): Promise<AuditEntry[]> {
    return auditList(this.deps.pool, q);
  }

  private inserted(count: number): void {
    this.deps.meter.dispatched(count);
    this.deps.added(count);
  }

  /** A bulk call's audit row (not yet written): its filter and limit as asked, and `extra`. */
  private auditOf(req: BulkRequest, action: AuditRecord["action"], extra: Record<string, string>): AuditRecord {
    const f = req.filter;
    const filter = {
      ...(f.queue !== null && { queue: f.queue }),
      ...(f.type !== null && { type: f.type }),
      ...(f.statuses.length > 0 && { statuses: f.statuses }),
      ...(f.createdAfter && { created_after: f.createdAfter.toISOString() }),
      ...(f.createdBefore && { created_before: f.createdBefore.toISOString() }),
      ...(f.origin !== null && { origin: f.origin }),
    };
    return { id: null, actor: req.actor, action, params: { filter, limit: req.limit, ...extra } };
  }
}

/** The filter with the action's statuses when it names none. */
function withStatuses(filter: TaskFilter, all: readonly TaskFilter["statuses"][number][]): TaskFilter {
  return filter.statuses.length > 0 ? filter : { ...filter, statuses: [...all] };
}

/** A dry run: how many tasks match, up to `limit`, and whether more do. */
async function dryRun(limit: number, count: (limit: number) => Promise<number>): Promise<BulkResult> {
  const n = await count(limit + 1);
  return { count: Math.min(n, limit), moreRemain: n > limit };
}

/**
 * Runs `batch` (one statement acting on at most the tasks it is given, returning how many it acted on)
 * until `limit` tasks are done or a batch comes back short; then `count` says whether any remain.
 */
async function inBatches(limit: number, count: (limit: number) => Promise<number>, batch: (limit: number) => Promise<number>): Promise<BulkResult> {
  let done = 0;
  while (done < limit) {
    const asked = Math.min(BULK_BATCH_SIZE, limit - done);
    const n = await batch(asked);
    done += n;
    if (n < asked) break;
  }
  return { count: done, moreRemain: (await count(1)) > 0 };
}
