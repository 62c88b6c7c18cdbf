/**
 * Finishes that arrive together are written together: calls made in the same turn of the event loop
 * (and while a write is in flight) are collected and recorded by one taskFinishMany statement.
 * Two finishes of the same task never share a statement; the later one waits for the next.
 */
import type { Clock } from "./clock.js";
import { MAX_IDS_PER_NOTIFY, type Db } from "./sql/db.js";
import { taskFinishMany } from "./sql/lease.js";
import type { FinishedAs, FinishInput, WakeOnFree } from "./types.js";

interface Waiting {
  input: FinishInput;
  resolve: (status: FinishedAs | null) => void;
  reject: (err: unknown) => void;
}

export class FinishBatcher {
  private queue: Waiting[] = [];
  private flushing = false;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly wakeOnFree: WakeOnFree,
  ) {}

  /** Resolves to where the task went, or null when the token no longer held the lease. */
  finish(input: FinishInput): Promise<FinishedAs | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch: Waiting[] = [];
      const ids = new Set<string>();
      const rest: Waiting[] = [];
      for (const w of this.queue) {
        if (batch.length < MAX_IDS_PER_NOTIFY && !ids.has(w.input.id)) {
          ids.add(w.input.id);
          batch.push(w);
        } else rest.push(w);
      }
      this.queue = rest;
      try {
        const done = await taskFinishMany(this.db, batch.map((w) => w.input), this.clock.now(), this.wakeOnFree);
        for (const w of batch) w.resolve(done.get(w.input.id) ?? null);
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    this.flushing = false;
  }
}
