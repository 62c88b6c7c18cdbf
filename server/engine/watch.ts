/**
 * Watching tasks. One TaskEvents per replica fans the notifier's task-change notifications out to
 * watchers by task id. A watcher treats a notification only as "something changed": it re-reads the
 * task and the log after the last sequence it sent. So a missed or merged notification loses nothing,
 * a reconnecting watcher resumes by sequence, and nothing is sent twice.
 */
import type { Notifier } from "./notifier.js";
import { CHANNEL_TASK, type Db } from "./sql/db.js";
import { taskGetWithLog } from "./sql/read.js";
import { notFound } from "./errors.js";
import { isFinal, type JsonValue, type LogEntry, type TaskRecord } from "./types.js";

export type WatchEvent =
  | { kind: "snapshot"; task: TaskRecord; log: LogEntry[] }
  | { kind: "log"; entry: LogEntry }
  | { kind: "status_value"; key: string; value: JsonValue }
  | { kind: "status"; task: TaskRecord };

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
    if (!set) this.watchers.set(id, (set = new Set()));
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
        const { task: next, log: entries } = read;
        for (const entry of entries) {
          lastSeq = entry.seq;
          yield { kind: "log", entry };
        }
        for (const [key, value] of Object.entries(next.statusValues)) {
          if (JSON.stringify(task.statusValues[key]) !== JSON.stringify(value)) yield { kind: "status_value", key, value };
        }
        if (statusMoved(task, next)) yield { kind: "status", task: next };
        task = next;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      unsubscribe();
    }
  }
}

const statusMoved = (a: TaskRecord, b: TaskRecord) => a.status !== b.status || a.attempts !== b.attempts;
