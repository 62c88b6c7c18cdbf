/**
 * A queue you push into from callbacks and read with `for await`. Used wherever a stream's outgoing
 * messages come from several places (leases, cancels, acks on the server; hello, logs, finishes in
 * the SDK). close() ends the iteration after what is queued; fail() ends it with an error.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
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
    return this.items.length;
  }

  /** Resolves once fewer than `n` items wait to be read (or the queue has ended). */
  whenShorterThan(n: number): Promise<void> {
    if (this.items.length < n || this.done) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push({ below: n, resolve }));
  }

  private taken(): void {
    if (this.roomWaiters.length === 0) return;
    const still: typeof this.roomWaiters = [];
    for (const w of this.roomWaiters) (this.items.length < w.below || this.done ? w.resolve() : still.push(w));
    this.roomWaiters = still;
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

  close(): void {
    if (this.done) return;
    this.done = true;
    this.taken();
    if (this.waiting && this.items.length === 0) {
      const resolve = this.waiting;
      this.waiting = this.failWaiting = null;
      resolve({ value: undefined, done: true });
    }
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.error = err ?? new Error("queue failed");
    this.done = true;
    this.items.length = 0;
    const reject = this.failWaiting;
    this.waiting = this.failWaiting = null;
    reject?.(this.error);
    this.taken();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.items.length > 0) {
          const value = this.items.shift()!;
          this.taken();
          return Promise.resolve({ value, done: false });
        }
        if (this.error) return Promise.reject(this.error);
        if (this.done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
        });
      },
      return: () => {
        this.close();
        this.items.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
      throw: (err: unknown) => {
        this.fail(err);
        return Promise.reject(err);
      },
    };
  }
}
