/**
 * A WatchTask stream that survives broken connections: when the stream fails (or ends before the
 * task's final status, as when a server replica stops), it reconnects with the last log sequence seen
 * and turns the new snapshot into the events that were missed. The caller sees one snapshot, then every
 * change once and in order, until the final status.
 *
 * States: connecting → streaming (events pass through; the state below follows them) → done after a
 * final status; a failure while connecting or streaming waits with backoff and connects again, giving
 * up after `maxAttempts` tries in a row without an event.
 */
import { Code } from "@connectrpc/connect";
import { DEFAULT_WATCH_RESUME } from "../defaults.js";
import { TaskqError } from "../errors.js";
import { isFinalStatus, type JsonObject, type TaskInfo, type WatchEvent } from "../types.js";

export interface WatchSource {
  /** One WatchTask stream from `afterSeq`: a snapshot first, then changes. */
  open(afterSeq: number, signal: AbortSignal | undefined): AsyncIterable<WatchEvent>;
}

export interface ResumeOptions {
  afterSeq?: number;
  signal?: AbortSignal;
  /** Tries in a row without an event before giving up; default DEFAULT_WATCH_RESUME.maxAttempts. */
  maxAttempts?: number;
  backoff?: { initialMs?: number; maxMs?: number };
}

/** Codes after which watching again may work: the server or the network was the problem. */
const RESUMABLE = new Set([Code.Unavailable, Code.Unknown, Code.Internal, Code.Aborted, Code.DeadlineExceeded, Code.Canceled]);

export async function* resumingWatch(source: WatchSource, opts: ResumeOptions = {}): AsyncGenerator<WatchEvent> {
  const { signal } = opts;
  const maxAttempts = opts.maxAttempts ?? DEFAULT_WATCH_RESUME.maxAttempts;
  const initialDelay = opts.backoff?.initialMs ?? DEFAULT_WATCH_RESUME.initialMs;
  const maxDelay = opts.backoff?.maxMs ?? DEFAULT_WATCH_RESUME.maxMs;
  let delay = initialDelay;
  let afterSeq = opts.afterSeq ?? 0;
  let known: TaskInfo | null = null;
  let failures = 0;
  for (;;) {
    try {
      for await (const event of source.open(afterSeq, signal)) {
        failures = 0;
        delay = initialDelay;
        const missed: WatchEvent[] = event.type === "snapshot" && known ? catchUp(known, event.task) : [event];
        if (event.type === "snapshot") known = { ...event.task, statusValues: { ...event.task.statusValues }, log: [] };
        for (const e of missed) {
          if (e.type === "log") afterSeq = Math.max(afterSeq, e.step.seq);
          if (e.type === "snapshot") afterSeq = Math.max(afterSeq, ...e.task.log.map((s) => s.seq));
          if (known) follow(known, e);
          yield e;
        }
        if (known && isFinalStatus(known.status)) return;
      }
      if (signal?.aborted) return;
      // The stream ended before the final status (the server replica stopped): watch again.
    } catch (err) {
      if (signal?.aborted) return;
      const e = TaskqError.from(err);
      if (!RESUMABLE.has(e.code) || ++failures >= maxAttempts) throw e;
    }
    await sleep(delay, signal);
    delay = Math.min(delay * 2, maxDelay);
  }
}

/** The events a watcher missed between what it knew and a fresh snapshot (whose log starts after it). */
function catchUp(known: TaskInfo, now: TaskInfo): WatchEvent[] {
  const events: WatchEvent[] = now.log.map((step) => ({ type: "log", step }));
  for (const [key, value] of Object.entries(now.statusValues)) {
    if (JSON.stringify(known.statusValues[key]) !== JSON.stringify(value)) events.push({ type: "status_value", key, value });
  }
  if (known.status !== now.status || known.attempts !== now.attempts) {
    // The snapshot does not say when the status changed; the task's start or finish time does, for those.
    const time = isFinalStatus(now.status) ? now.finishedAt : now.status === "running" ? now.startedAt : null;
    events.push({ type: "status", status: now.status, attempts: now.attempts, worker: now.worker, result: now.result, error: now.error, time });
  }
  return events;
}

/** Keeps the known state in step with an event, so a later snapshot can be compared with it. */
function follow(known: TaskInfo, e: WatchEvent): void {
  if (e.type === "status_value") (known.statusValues as JsonObject)[e.key] = e.value;
  if (e.type === "status") Object.assign(known, { status: e.status, attempts: e.attempts, worker: e.worker, result: e.result, error: e.error });
}

/** Resolves after `ms`, or at once when `signal` aborts; the caller's signal keeps no listener after. */
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
