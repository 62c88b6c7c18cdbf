/**
 * The pause before a worker connects again: exponential backoff with "equal jitter". The ceiling starts
 * at `initialMs` and doubles after each pause up to `maxMs`; each pause is drawn uniformly from the upper
 * half of the ceiling, [ceiling/2, ceiling]. The jitter spreads the workers of a replica that restarted,
 * which all lost their streams at the same moment, so they do not reconnect in lockstep; the lower
 * half-ceiling keeps a worker from retrying in a tight loop against a server that is down.
 */
export class Backoff {
  private ceiling: number;

  /** `random` returns a number in [0, 1), as Math.random does (tests pass their own). */
  constructor(
    private readonly bounds: { initialMs: number; maxMs: number },
    private readonly random: () => number = Math.random,
  ) {
    this.ceiling = bounds.initialMs;
  }

  /** The next pause, in ms; the ceiling doubles for the one after. */
  next(): number {
    const ceiling = Math.min(this.ceiling, this.bounds.maxMs);
    this.ceiling = Math.min(ceiling * 2, this.bounds.maxMs);
    return ceiling / 2 + this.random() * (ceiling / 2);
  }

  /** Back to the first ceiling (the server welcomed the worker: the connection works). */
  reset(): void {
    this.ceiling = this.bounds.initialMs;
  }
}
