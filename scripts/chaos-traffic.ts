/**
 * The chaos run's load (scripts/chaos.ts): batches of 20 tasks dispatched under idempotency keys to a
 * random replica, and an interrupt for every long task a moment after it was dispatched. A call that a
 * replica does not answer (it is down, paused, or cut off from Postgres) is tried on another one; a
 * batch retried after an ambiguous failure queues nothing twice. How long a call may take before it is
 * tried elsewhere follows the machine: 3 s, twice as long after each call that took longer (on a slow
 * or busy machine every replica answers late, and a call that is always abandoned never lands), back
 * down by half after each answer.
 *
 * Mix: 78 % quick tasks, 4 % slow ones (1–2 s, with log steps and progress), 5 % that fail twice with a
 * retryable error and complete on attempt 3, 3 % that snooze before they complete, 3 % that outlive their
 * 5 s timeout by extending their deadline, 3 % that fail for good, 4 % long ones that get interrupted.
 *
 * An operator retries failed tasks meanwhile (retry()): one at a time with Retry, each asked of two
 * replicas at once (both must answer with the same retry), and a few at a time with RetryMany. Retries
 * fail again, and are retried in turn; chaos-check.ts finds every retry by its retry_of and checks it
 * like the task it retries.
 */
import { Code, TaskClient, TaskqError, type TaskHandle } from "@taskq/sdk";
import type { Kind } from "./chaos-check.js";
import { KEYED_QUEUE, KEYS } from "./chaos-keys.js";
import { pick, say, sleep } from "./chaos-procs.js";

const KIND_MIX: [Kind, number][] = [
  ["chaos.quick", 0.78],
  ["chaos.slow", 0.04],
  ["chaos.retry", 0.05],
  ["chaos.snooze", 0.03],
  ["chaos.extend", 0.03],
  ["chaos.fail", 0.03],
  ["chaos.interrupted", 0.04],
];
/** The share of batches dispatched to the keyed queue. */
const KEYED_SHARE = 0.25;
/** A call to a replica that does not answer within this (it may be paused) is tried on another... */
const CALL_TIMEOUT_MS = 3_000;
/** ...unless calls keep taking longer: then the wait doubles, up to this. */
const MAX_CALL_TIMEOUT_MS = 60_000;

/** No replica accepted a batch for the time dispatch() was given. */
class DispatchStalled extends Error {}

export class Traffic {
  /** Every task dispatched, by id. */
  readonly dispatched = new Map<string, Kind>();
  private readonly interrupts: string[] = [];
  /** Tasks that fail for good, to retry once they have. */
  private readonly failing: string[] = [];
  private readonly clients: TaskClient[];
  private stopping = false;
  private callTimeoutMs = CALL_TIMEOUT_MS;
  /** Set when dispatching gave up, saying why: the cluster accepted no work for a long while. */
  stalled: string | null = null;

  constructor(urls: string[]) {
    this.clients = urls.map((url) => new TaskClient({ url }));
  }

  /**
   * Dispatches until `until` (performance.now()), and after that until at least `minTasks` were
   * dispatched (it waits for the tasks, not for a time), or until `failed()` says the run failed. It
   * gives up (`stalled` is then set) only when no replica accepted a batch for `stallMs`.
   */
  async dispatch(until: number, minTasks: number, stallMs: number, failed: () => boolean): Promise<void> {
    let n = 0;
    let acceptedAt = performance.now();
    const stalled = () => performance.now() - acceptedAt > stallMs;
    while ((performance.now() < until || this.dispatched.size < minTasks) && !failed()) {
      const batch = Array.from({ length: 20 }, () => ({ key: `chaos-${n++}`, kind: randomKind() }));
      // A quarter of the batches go to the keyed queue, spread over its keys (chaos-keys.ts).
      const keyed = Math.random() < KEYED_SHARE;
      const call = (c: TaskClient) =>
        c.dispatchBatch(
          batch.map(({ key, kind }, i) => ({
            type: kind,
            ...(keyed ? { queue: KEYED_QUEUE, concurrencyKey: KEYS[i % KEYS.length] } : {}),
            idempotencyKey: key,
            maxAttempts: 100, // a lost worker costs an attempt; a failing handler fails at once whatever this says
            retryDelayMs: 100,
            timeoutMs: kind === "chaos.extend" ? 5_000 : undefined,
            title: key,
          })),
        );
      const handles = await this.anyReplica(call, stalled).catch((err: unknown) => {
        if (!(err instanceof DispatchStalled)) throw err;
        this.stalled = `no replica accepted a batch for ${stallMs / 1000} s; dispatching gave up after ${this.dispatched.size} tasks`;
        say(`problem: ${this.stalled}`);
        return null;
      });
      if (!handles) return;
      acceptedAt = performance.now();
      handles.forEach((h, i) => {
        this.dispatched.set(h.id, batch[i].kind);
        if (batch[i].kind === "chaos.interrupted") this.interrupts.push(h.id);
        if (batch[i].kind === "chaos.fail") this.failing.push(h.id);
      });
      await sleep(40);
    }
  }

  /** Interrupts every long task 0–300 ms after it was dispatched, until `stop()` and none is left. */
  async interrupt(): Promise<void> {
    while (!this.stopping || this.interrupts.length > 0) {
      const id = this.interrupts.shift();
      if (!id) {
        await sleep(100);
        continue;
      }
      await sleep(Math.random() * 300);
      await this.anyReplica((c) => c.interrupt(id, "chaos")).catch((err: unknown) => {
        if (!(err instanceof TaskqError && err.code === Code.FailedPrecondition)) throw err; // already finished is fine
      });
    }
  }

  /**
   * Until `stop()`: every half second or so, either retries one task that failed (on two replicas at
   * once: both must name the same retry) or retries up to 20 failed ones with RetryMany. A task not
   * failed yet is put back for later.
   */
  async retry(): Promise<void> {
    while (!this.stopping) {
      await sleep(250 + Math.random() * 500);
      if (Math.random() < 0.3) {
        await this.anyReplica((c) => c.retryMany({ type: "chaos.fail", statuses: ["failed"] }, { limit: 20 }));
        continue;
      }
      const id = this.failing.shift();
      if (!id) continue;
      const retries = await Promise.all([1, 2].map(() => this.anyReplica((c) => c.retry(id)).catch((err: unknown) => err)));
      const refused = retries.filter((r) => r instanceof TaskqError && r.code === Code.FailedPrecondition);
      if (refused.length > 0) {
        this.failing.push(id); // not failed yet
        continue;
      }
      const [a, b] = retries;
      if (a instanceof Error) throw a;
      if (b instanceof Error) throw b;
      if ((a as TaskHandle).id !== (b as TaskHandle).id) throw new Error(`task ${id} retried twice: as ${(a as TaskHandle).id} and ${(b as TaskHandle).id}`);
    }
  }

  stop(): void {
    this.stopping = true;
  }

  close(): void {
    this.stopping = true;
    for (const c of this.clients) c.close();
  }

  /** Calls `fn` against replicas in turn until one answers, or until `giveUp()` (then throws DispatchStalled). */
  private async anyReplica<T>(fn: (c: TaskClient) => Promise<T>, giveUp: () => boolean = () => false): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await within(fn(pick(this.clients)), this.callTimeoutMs);
        this.callTimeoutMs = Math.max(CALL_TIMEOUT_MS, this.callTimeoutMs / 2);
        return answer;
      } catch (err) {
        const answered = err instanceof TaskqError && [Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition].includes(err.code);
        if (answered || attempt > 2_000) throw err;
        if (err instanceof NoAnswer) this.callTimeoutMs = Math.min(MAX_CALL_TIMEOUT_MS, this.callTimeoutMs * 2);
        if (giveUp()) throw new DispatchStalled();
        await sleep(Math.min(50 * (attempt + 1), 500));
      }
    }
  }
}

function randomKind(): Kind {
  const r = Math.random();
  let acc = 0;
  for (const [kind, share] of KIND_MIX) {
    acc += share;
    if (acc >= r) return kind;
  }
  return "chaos.quick";
}

/** A call was not answered in time. */
class NoAnswer extends Error {}

/** `p`, or a rejection (NoAnswer) once `ms` passed without an answer (a late failure of `p` is ignored). */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  p.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new NoAnswer(`no answer within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
