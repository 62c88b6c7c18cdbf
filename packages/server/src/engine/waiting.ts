/**
 * Why a pending task is not running yet, for Status and ListActive. Read when asked, never kept: the
 * answer is what holds the task back at that moment, in the order the claim would find it.
 *
 *   not_due       its next_try_at is in the future (a delay, run_at, or a retry's pause)
 *   queue_paused  its queue is paused
 *   no_worker     no connected worker (on any replica) runs its type from its queue
 *   queue_limit   its queue runs max_workers tasks already
 *   global_limit  global_max_workers tasks run already
 *   workers_busy  workers that run it are connected, but none has a free credit for it now (they are
 *                 busy, or tasks ahead of it in priority and due time take the credits first)
 */
import { waitingFactsRead } from "./sql/waiting.js";
import type { Db } from "./sql/db.js";
import type { TaskRecord, WaitReason, Waiting } from "./types.js";

export interface WaitLimits {
  /** Queue → its max_workers; queues without a limit are absent. */
  queueMaxWorkers: Map<string, number>;
  globalMaxWorkers: number | null;
  /** Sessions not heartbeated for this long are gone. */
  staleAfterMs: number;
}

/** Sets `waiting` on each pending task of `tasks`; others are left as they are. */
export async function explainWaits(db: Db, tasks: TaskRecord[], limits: WaitLimits, now: Date): Promise<void> {
  const pending = tasks.filter((t) => t.status === "pending");
  if (pending.length === 0) return;
  const facts = await waitingFactsRead(db, [...new Set(pending.map((t) => t.queue))], limits.staleAfterMs);
  const totalRunning = [...facts.running.values()].reduce((n, c) => n + c, 0);
  for (const task of pending) {
    const wait = (reason: WaitReason, detail: string): Waiting => ({ reason, detail });
    const running = facts.running.get(task.queue) ?? 0;
    const queueMax = limits.queueMaxWorkers.get(task.queue);
    const takers = facts.workers.filter((w) => w.types.includes(task.type) && (w.queues.length === 0 || w.queues.includes(task.queue)));
    if (task.nextTryAt && task.nextTryAt.getTime() > now.getTime()) {
      task.waiting = wait("not_due", `due at ${task.nextTryAt.toISOString()}`);
    } else if (facts.paused.has(task.queue)) {
      task.waiting = wait("queue_paused", `queue "${task.queue}" is paused`);
    } else if (takers.length === 0) {
      task.waiting = wait("no_worker", `no connected worker runs type "${task.type}" from queue "${task.queue}"`);
    } else if (queueMax !== undefined && running >= queueMax) {
      task.waiting = wait("queue_limit", `queue "${task.queue}" runs ${running} of its max_workers ${queueMax}`);
    } else if (limits.globalMaxWorkers !== null && totalRunning >= limits.globalMaxWorkers) {
      task.waiting = wait("global_limit", `${totalRunning} tasks run, of global_max_workers ${limits.globalMaxWorkers}`);
    } else {
      const credits = takers.reduce((n, w) => n + w.credits, 0);
      task.waiting = wait("workers_busy", `${takers.length} connected worker(s) run it, with ${credits} free credit(s) at their last heartbeat`);
    }
  }
}
