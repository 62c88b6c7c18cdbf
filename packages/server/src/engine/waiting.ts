/**
 * Why a pending task is not running yet, for Status and ListActive. Read when asked, never kept: the
 * answer is what holds the task back at that moment, in the order the claim would find it.
 *
 *   not_due       its next_try_at is in the future (a delay, run_at, or a retry's pause)
 *   queue_paused  its queue is paused
 *   no_worker     no connected worker (on any replica) runs its type from its queue
 *   queue_limit   its queue runs max_workers tasks already
 *   key_limit     its concurrency key runs its queue's max_running_per_key tasks already
 *   global_limit  global_max_workers tasks run already
 *   rate_limit    its queue's rate_limit, or its key's rate_limit_per_key, has no token free now
 *   workers_busy  workers that run it are connected, but none has a free credit for it now (they are
 *                 busy, or tasks ahead of it — in priority, due time, or its key's turn — take the
 *                 credits first)
 */
import { pairOf, waitingFactsRead } from "./sql/waiting.js";
import type { Db } from "./sql/db.js";
import type { QueueLimits, RateLimit, TaskRecord, WaitReason, Waiting } from "./types.js";

export interface WaitLimits extends QueueLimits {
  /** Sessions not heartbeated for this long are gone. */
  staleAfterMs: number;
}

/** Sets `waiting` on each pending task of `tasks`; others are left as they are. */
export async function explainWaits(db: Db, tasks: TaskRecord[], limits: WaitLimits, now: Date): Promise<void> {
  const pending = tasks.filter((t) => t.status === "pending");
  if (pending.length === 0) return;
  const keys = [...new Set(pending.flatMap((t) => (t.concurrencyKey ? [t.concurrencyKey] : [])))];
  const facts = await waitingFactsRead(db, { queues: [...new Set(pending.map((t) => t.queue))], keys, limits, now });
  const totalRunning = [...facts.running.values()].reduce((n, c) => n + c, 0);
  for (const task of pending) {
    const wait = (reason: WaitReason, detail: string): Waiting => ({ reason, detail });
    const running = facts.running.get(task.queue) ?? 0;
    const queueMax = limits.queues[task.queue];
    const keyMax = task.concurrencyKey ? limits.perKey[task.queue] : undefined;
    const keyRunning = task.concurrencyKey ? (facts.keyRunning.get(pairOf(task.queue, task.concurrencyKey)) ?? 0) : 0;
    const queueTokens = facts.tokens.get(pairOf(task.queue, ""));
    const keyTokens = task.concurrencyKey ? facts.tokens.get(pairOf(task.queue, task.concurrencyKey)) : undefined;
    const takers = facts.workers.filter((w) => w.types.includes(task.type) && (w.queues.length === 0 || w.queues.includes(task.queue)));
    if (task.nextTryAt && task.nextTryAt.getTime() > now.getTime()) {
      task.waiting = wait("not_due", `due at ${task.nextTryAt.toISOString()}`);
    } else if (facts.paused.has(task.queue)) {
      task.waiting = wait("queue_paused", `queue "${task.queue}" is paused`);
    } else if (takers.length === 0) {
      task.waiting = wait("no_worker", `no connected worker runs type "${task.type}" from queue "${task.queue}"`);
    } else if (queueMax !== undefined && running >= queueMax) {
      task.waiting = wait("queue_limit", `queue "${task.queue}" runs ${running} of its max_workers ${queueMax}`);
    } else if (keyMax !== undefined && keyRunning >= keyMax) {
      task.waiting = wait("key_limit", `key "${task.concurrencyKey}" runs ${keyRunning} of queue "${task.queue}"'s max_running_per_key ${keyMax}`);
    } else if (limits.global !== null && totalRunning >= limits.global) {
      task.waiting = wait("global_limit", `${totalRunning} tasks run, of global_max_workers ${limits.global}`);
    } else if (queueTokens !== undefined && queueTokens < 1) {
      const rate = limits.rates[task.queue].queue!;
      task.waiting = wait("rate_limit", `queue "${task.queue}"'s rate_limit (${describe(rate)}) has no token free; the next comes in ${untilToken(queueTokens, rate)} ms`);
    } else if (keyTokens !== undefined && keyTokens < 1) {
      const rate = limits.rates[task.queue].key!;
      task.waiting = wait(
        "rate_limit",
        `key "${task.concurrencyKey}" has no token free in queue "${task.queue}"'s rate_limit_per_key (${describe(rate)}); the next comes in ${untilToken(keyTokens, rate)} ms`,
      );
    } else {
      const credits = takers.reduce((n, w) => n + w.credits, 0);
      task.waiting = wait("workers_busy", `${takers.length} connected worker(s) run it, with ${credits} free credit(s) at their last heartbeat`);
    }
  }
}

const describe = (rate: RateLimit) => `${rate.tasks} per ${rate.perMs} ms, burst ${rate.burst}`;

const untilToken = (tokens: number, rate: RateLimit) => Math.ceil(((1 - tokens) * rate.perMs) / rate.tasks);
