/**
 * Dispatches that arrive together are written together. Calls made in the same turn of the event loop
 * (and while a write is in flight) go into one taskInsertMany statement: one round trip, one commit,
 * one NOTIFY for all of them. Postgres serializes the commits of transactions that NOTIFY, so single
 * Dispatch calls from many callers, each in its own transaction, would queue behind each other's
 * commits; together they share one.
 *
 * Each call still gets its own answer, in its own order. A key repeated within the merged write names
 * one task, as it would if the calls had run one after the other. A failed write fails every call in it.
 */
import type { Clock } from "./clock.js";
import type { Db } from "./sql/db.js";
import { idempotencyKeyFind, taskInsertMany } from "./sql/dispatch.js";
import type { DispatchResult, NewTask } from "./types.js";

/** Calls are merged until a write holds this many tasks (a larger call goes alone). */
const MAX_TASKS_PER_WRITE = 1_000;

interface Waiting {
  tasks: NewTask[];
  resolve: (results: DispatchResult[]) => void;
  reject: (err: unknown) => void;
}

export class DispatchBatcher {
  private queue: Waiting[] = [];
  private flushing = false;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
  ) {}

  /** Queues the tasks; resolves with one result per task, in order. */
  insert(tasks: NewTask[]): Promise<DispatchResult[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ tasks, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      let size = 0;
      let take = 0;
      while (take < this.queue.length && (take === 0 || size + this.queue[take].tasks.length <= MAX_TASKS_PER_WRITE)) {
        size += this.queue[take++].tasks.length;
      }
      const batch = this.queue.splice(0, take);
      try {
        const results = await tasksInsert(this.db, batch.flatMap((w) => w.tasks), this.clock.now());
        let at = 0;
        for (const w of batch) {
          w.resolve(results.slice(at, at + w.tasks.length));
          at += w.tasks.length;
        }
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    this.flushing = false;
  }
}

/**
 * Inserts tasks in one statement, all or nothing. A task whose idempotency key already names a task
 * is not inserted; its result is that task, with created false. The same key twice among `tasks`
 * names one task: the first is inserted, the repeats answered with its id.
 */
async function tasksInsert(db: Db, tasks: NewTask[], now: Date): Promise<DispatchResult[]> {
  const firstByKey = new Map<string, number>();
  const unique: NewTask[] = [];
  const plan = tasks.map((t) => {
    const key = t.idempotencyKey;
    const first = key === null ? undefined : firstByKey.get(key);
    if (first !== undefined) return { slot: first, repeat: true };
    if (key !== null) firstByKey.set(key, unique.length);
    return { slot: unique.push(t) - 1, repeat: false };
  });
  const inserted = await taskInsertMany(db, unique, now);
  const missing = unique.flatMap((t, i) => (inserted[i] === null && t.idempotencyKey ? [t.idempotencyKey] : []));
  const existing = missing.length > 0 ? await idempotencyKeyFind(db, missing) : new Map<string, string>();
  const results = unique.map((t, i): DispatchResult => {
    const row = inserted[i];
    if (row) return row;
    const id = existing.get(t.idempotencyKey!);
    if (!id) throw new Error(`idempotency key ${t.idempotencyKey} neither inserted nor found`);
    return { id, created: false };
  });
  return plan.map((p) => (p.repeat ? { id: results[p.slot].id, created: false } : results[p.slot]));
}
