/**
 * A queue you push into from callbacks and read with `for await`. Used wherever a stream's outgoing
 * messages come from several places (leases, cancels, acks on the server; hello, logs, finishes in
 * the SDK). close() ends the iteration after what is queued (cleanly, or with an error once that is
 * read); fail() ends it with an error at once, dropping what is queued.
 *
 * batches() reads it a batch at a time instead: whatever is already queued when the reader comes
 * back, within a count and a size budget, so messages produced in one turn of the event loop can
 * travel as one.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  /** Index of the first unread item in `items` (reading does not shift the array). */
  private head = 0;
  private waiting: ((r: IteratorResult<T>) => void) | null = null;
  private failWaiting: ((err: unknown) => void) | null = null;
  private done = false;
  private error: unknown = null;
  private roomWaiters: { below: number; resolve: () => void }[] = [];

  get closed(): boolean {
    return this.done;
  }

  /** Items pushed and not yet read. */
  get length(): number {
    return this.items.length - this.head;
  }

  /** Resolves once fewer than `n` items wait to be read (or the queue has ended). */
  whenShorterThan(n: number): Promise<void> {
    if (this.length < n || this.done) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push({ below: n, resolve }));
  }

  push(item: T): boolean {
    if (this.done) return false;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = this.failWaiting = null;
      resolve({ value: item, done: false });
    } else this.items.push(item);
    return true;
  }

  close(err?: unknown): void {
    if (this.done) return;
    this.done = true;
    if (err !== undefined) this.error = err;
    this.taken();
    if (this.waiting && this.length === 0) {
      const [resolve, reject] = [this.waiting, this.failWaiting];
      this.waiting = this.failWaiting = null;
      if (err !== undefined) reject?.(err);
      else resolve({ value: undefined, done: true });
    }
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.error = err ?? new Error("queue failed");
    this.done = true;
    this.clear();
    const reject = this.failWaiting;
    this.waiting = this.failWaiting = null;
    reject?.(this.error);
    this.taken();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.length > 0) return Promise.resolve({ value: this.take(), done: false });
        if (this.error) return Promise.reject(this.error);
        if (this.done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
        });
      },
      return: () => {
        this.close();
        this.clear();
        return Promise.resolve({ value: undefined, done: true });
      },
      throw: (err: unknown) => {
        this.fail(err);
        return Promise.reject(err);
      },
    };
  }

  /**
   * Reads the queue a batch at a time: the next item (waiting for it if need be), then the items
   * already queued behind it while the batch stays within `limits.count` items and `limits.bytes` by
   * `bytesOf`. An item larger than the whole budget travels alone.
   */
  async *batches(bytesOf: (item: T) => number, limits: { count: number; bytes: number }): AsyncGenerator<T[]> {
    const iterator = this[Symbol.asyncIterator]();
    try {
      for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
        const batch = [r.value];
        let bytes = bytesOf(r.value);
        while (this.length > 0 && batch.length < limits.count) {
          const size = bytesOf(this.items[this.head]);
          if (bytes + size > limits.bytes) break;
          bytes += size;
          batch.push(this.take());
        }
        yield batch;
      }
    } finally {
      await iterator.return?.();
    }
  }

  private take(): T {
    const item = this.items[this.head];
    this.items[this.head++] = undefined as T;
    if (this.head === this.items.length) this.clear();
    else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    this.taken();
    return item;
  }

  private clear(): void {
    this.items = [];
    this.head = 0;
  }

  private taken(): void {
    if (this.roomWaiters.length === 0) return;
    const still: typeof this.roomWaiters = [];
    for (const w of this.roomWaiters) (this.length < w.below || this.done ? w.resolve() : still.push(w));
    this.roomWaiters = still;
  }
}
