/**
 * How the conformance cases observe a task: dispatched into the paused harness queue and watched before
 * the queue resumes, so the watch's snapshot shows it PENDING and every later status change (with its
 * time on the server's clock), log step and status value arrives as an event. Pausing instead of hoping
 * to be fast enough is what keeps the cases free of races with the worker.
 *
 * The checks throw one-line errors, which the harness prints after `FAIL <case>:`.
 */
import { deepStrictEqual } from "node:assert/strict";
import { isFinalStatus, type DispatchOptions, type JsonObject, type TaskClient, type TaskHandle, type TaskInfo, type WatchEvent } from "@taskq/sdk";
import { QUEUE } from "./conformance-env.js";

export type StatusEvent = Extract<WatchEvent, { type: "status" }>;

/** What a case works with; `client` is replaced when the server restarts. */
export interface CaseEnv {
  client: TaskClient;
  /** Ends with the case: its deadline passed, or the worker under test exited. */
  signal: AbortSignal;
}

/** A watched task: the events so far, and waits for the ones to come. */
export class Followed {
  readonly events: WatchEvent[] = [];
  private ended: { error?: unknown } | null = null;
  private waiters: (() => void)[] = [];

  constructor(
    readonly handle: TaskHandle,
    events: AsyncGenerator<WatchEvent>,
    private readonly signal: AbortSignal,
  ) {
    void this.pump(events);
  }

  private async pump(events: AsyncGenerator<WatchEvent>): Promise<void> {
    try {
      for await (const e of events) {
        this.events.push(e);
        for (const wake of this.waiters.splice(0)) wake();
      }
      this.ended = {};
    } catch (error) {
      this.ended = { error };
    }
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** The first event that `matches`, waiting for it while the watch lasts. */
  async until<E extends WatchEvent>(what: string, matches: (e: WatchEvent) => e is E): Promise<E> {
    for (let i = 0; ; ) {
      for (; i < this.events.length; i++) {
        const e = this.events[i];
        if (matches(e)) return e;
      }
      if (this.ended) {
        const why = this.signal.aborted ? String(this.signal.reason?.message ?? this.signal.reason) : this.ended.error ? `the watch failed: ${(this.ended.error as Error).message}` : "the watch ended";
        throw new Error(`no ${what} (${why}); statuses so far: ${this.summary()}`);
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Waits for the first status event of `status` (any attempt). */
  status(status: StatusEvent["status"]): Promise<StatusEvent> {
    return this.until(status, (e): e is StatusEvent => e.type === "status" && e.status === status);
  }

  /** Waits for the final status, then reads the task as it ended. */
  async final(): Promise<TaskInfo> {
    await this.until("final status", (e): e is StatusEvent => e.type === "status" && isFinalStatus(e.status));
    return this.handle.status();
  }

  /** The status changes after the snapshot, in order. */
  get changes(): StatusEvent[] {
    return this.events.filter((e): e is StatusEvent => e.type === "status");
  }

  /** The status changes as "running(1) pending(1) …", the attempt count in brackets. */
  summary(): string {
    return this.changes.map((c) => `${c.status}(${c.attempts})`).join(" ") || "none";
  }
}

/**
 * Dispatches a task into the paused queue, watches it, and resumes the queue once the watch's snapshot
 * is in. `beforeResume` runs with the task pending and watched (to hold the worker's link, say).
 */
export async function follow(
  env: CaseEnv,
  type: string,
  params: JsonObject,
  opts: DispatchOptions & { beforeResume?: () => void } = {},
): Promise<Followed> {
  const { beforeResume, ...dispatch } = opts;
  await env.client.pauseQueue(QUEUE);
  try {
    const handle = await env.client.dispatch(type, params, { ...dispatch, queue: QUEUE });
    const followed = new Followed(handle, handle.watch({ signal: env.signal }), env.signal);
    const first = await followed.until("snapshot", (e): e is Extract<WatchEvent, { type: "snapshot" }> => e.type === "snapshot");
    if (first.task.status !== "pending") throw new Error(`task ${handle.id} was ${first.task.status} in a paused queue`);
    beforeResume?.();
    return followed;
  } finally {
    await env.client.resumeQueue(QUEUE);
  }
}

/** Checks what a task ended as: its status changes after dispatch, then the fields given. */
export function expectEnded(f: Followed, task: TaskInfo, want: { statuses: string; attempts: number } & Partial<Pick<TaskInfo, "result" | "error">>): void {
  same("status changes", f.summary().replace(/\(\d+\)/g, ""), want.statuses);
  same("attempts", task.attempts, want.attempts);
  if ("result" in want) same("result", task.result, want.result);
  if ("error" in want) same("error", task.error, want.error);
}

/** Deep strict equality (object key order aside), failing with the first place where they differ. */
export function same(what: string, got: unknown, want: unknown): void {
  const d = firstDifference(got, want, "");
  if (d) throw new Error(`${what}${d.path}: got ${show(d.got)}, want ${show(d.want)}`);
}

type Difference = { path: string; got: unknown; want: unknown };

/** Where two JSON-like values first differ (".key", "[index]"), or null when they are equal. */
function firstDifference(got: unknown, want: unknown, path: string): Difference | null {
  const isArray = Array.isArray(got) && Array.isArray(want);
  const isObject = !isArray && isPlainObject(got) && isPlainObject(want);
  if (isArray || isObject) {
    const a = got as Record<string, unknown>;
    const b = want as Record<string, unknown>;
    if (isArray && (got as unknown[]).length !== (want as unknown[]).length) {
      // Different lengths: the whole list says more than its first differing item.
      return { path, got, want };
    }
    const keys = isArray ? Object.keys(b) : [...new Set([...Object.keys(b), ...Object.keys(a)])];
    for (const k of keys) {
      const d = firstDifference(a[k], b[k], isArray ? `${path}[${k}]` : `${path}.${k}`);
      if (d) return d;
    }
    return null;
  }
  try {
    deepStrictEqual(got, want);
    return null;
  } catch {
    return { path, got, want };
  }
}

const isPlainObject = (v: unknown): boolean => typeof v === "object" && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

export function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** A value as JSON, shortened for one line. */
export function show(value: unknown): string {
  const text = value === undefined ? "undefined" : JSON.stringify(value);
  return text.length > 300 ? `${text.slice(0, 300)}… (${text.length} characters)` : text;
}

/** When a status change happened (server clock), in ms; a change without a time fails the case. */
export function at(change: StatusEvent): number {
  if (!change.time) throw new Error(`the ${change.status} change of attempt ${change.attempts} has no time`);
  return change.time.getTime();
}
