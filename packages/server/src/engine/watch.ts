/**
 * Watching tasks. One TaskEvents per replica fans the notifier's task-change notifications out to
 * watchers by task id. A watcher treats a notification only as "something changed": it re-reads the
 * task and the log after the last sequence it sent. So a missed or merged notification loses nothing,
 * a reconnecting watcher resumes by sequence, and nothing is sent twice.
 *
 * Status changes come from the task's own record of them (status_changes), not from comparing two
 * reads: a watcher that reads a task only after it was leased and finished still reports RUNNING,
 * then COMPLETED, each in its place among the log steps.
 */
import type { Notifier } from "./notifier.js";
import { CHANNEL_TASK, type Db } from "./sql/db.js";
import { taskGetWithLog } from "./sql/read.js";
import { notFound } from "./errors.js";
import { isFinal, type JsonValue, type LogEntry, type StatusChange, type TaskRecord } from "./types.js";

export type WatchEvent =
  | { kind: "snapshot"; task: TaskRecord; log: LogEntry[] }
  | { kind: "log"; entry: LogEntry }
  | { kind: "status_value"; key: string; value: JsonValue }
  /** `task` is the task as read with the change; its result belongs to a COMPLETED change. */
  | { kind: "status"; change: StatusChange; task: TaskRecord };

export class TaskEvents {
  private readonly watchers = new Map<string, Set<() => void>>();

  constructor(notifier: Notifier) {
    notifier.on(CHANNEL_TASK, (payload) => {
      for (const id of payload.split(",")) for (const fn of this.watchers.get(id) ?? []) fn();
    });
    notifier.on("reconnected", () => {
      for (const set of this.watchers.values()) for (const fn of set) fn();
    });
  }

  get watcherCount(): number {
    let n = 0;
    for (const set of this.watchers.values()) n += set.size;
    return n;
  }

  subscribe(id: string, fn: () => void): () => void {
    let set = this.watchers.get(id);
    if (!set) {
      set = new Set();
      this.watchers.set(id, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0) this.watchers.delete(id);
    };
  }

  /** A snapshot, then every change, ending after the final status or when `signal` aborts. */
  async *watch(db: Db, id: string, afterSeq: number, signal: AbortSignal): AsyncGenerator<WatchEvent> {
    let changed = false;
    let wakeUp: (() => void) | null = null;
    const unsubscribe = this.subscribe(id, () => {
      changed = true;
      wakeUp?.();
    });
    const onAbort = () => wakeUp?.();
    signal.addEventListener("abort", onAbort);
    try {
      const first = await taskGetWithLog(db, id, afterSeq);
      if (!first) throw notFound(`task ${id} not found`);
      let task = first.task;
      let lastSeq = first.log.at(-1)?.seq ?? afterSeq;
      yield { kind: "snapshot", task, log: first.log };
      while (!isFinal(task.status) && !signal.aborted) {
        if (!changed) await new Promise<void>((resolve) => (wakeUp = resolve));
        wakeUp = null;
        if (signal.aborted) return;
        changed = false;
        // Task and new log steps in one snapshot: a final status comes with every step written before it.
        const read = await taskGetWithLog(db, id, lastSeq);
        if (!read) return;
        const next = read.task;
        const events = changesAmongLog(next.statusChanges.slice(task.statusChanges.length), read.log);
        // A finished task's last change is its final status (read from the history row, after every log
        // step): it goes last, after the status values.
        const last = events.at(-1);
        const final = isFinal(next.status) && last?.kind === "change" ? last.change : undefined;
        if (final) events.pop();
        for (const e of events) {
          if (e.kind === "log") {
            lastSeq = e.entry.seq;
            yield e;
          } else yield { kind: "status", change: e.change, task: next };
        }
        for (const [key, value] of Object.entries(next.statusValues)) {
          if (JSON.stringify(task.statusValues[key]) !== JSON.stringify(value)) yield { kind: "status_value", key, value };
        }
        if (final) yield { kind: "status", change: final, task: next };
        task = next;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      unsubscribe();
    }
  }
}

/** Log steps and status changes in the order they happened: a change follows the steps up to its logSeq. */
function changesAmongLog(changes: StatusChange[], log: LogEntry[]) {
  const events: ({ kind: "log"; entry: LogEntry } | { kind: "change"; change: StatusChange })[] = [];
  let i = 0;
  for (const change of changes) {
    for (; i < log.length && log[i].seq <= change.logSeq; i++) events.push({ kind: "log", entry: log[i] });
    events.push({ kind: "change", change });
  }
  for (; i < log.length; i++) events.push({ kind: "log", entry: log[i] });
  return events;
}
