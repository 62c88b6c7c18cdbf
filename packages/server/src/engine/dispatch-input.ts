/** A dispatch as callers give it, and the task it becomes once the queue's and the server's defaults fill the rest. */
import { DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_DELAY_MS, type QueueSettings } from "./settings.js";
import type { JsonObject, NewTask, RetryBackoff, TraceContext } from "./types.js";

/** A dispatch as the caller gives it: everything but the type may be left to defaults. */
export interface DispatchInput {
  type: string;
  queue?: string;
  params?: JsonObject;
  title?: string;
  priority?: number;
  origin?: "user" | "system";
  initiator?: string;
  nodeId?: string;
  timeoutMs?: number;
  maxAttempts?: number;
  retryDelayMs?: number;
  retryBackoff?: RetryBackoff;
  runAt?: Date;
  /** Eligible this long after dispatch, by the engine's clock; ignored when runAt is set. */
  delayMs?: number;
  idempotencyKey?: string;
  /** Whose work this is within its queue (DispatchRequest.concurrency_key). */
  concurrencyKey?: string;
  /** The trace context to store with the task (the dispatch span's); absent outside any trace. */
  trace?: TraceContext | null;
}

/** The task `input` queues in `queue`: its own fields, else the queue's settings, else the server's defaults. */
export function newTaskOf(input: DispatchInput, queue: string, settings: QueueSettings, now: Date): NewTask {
  return {
    type: input.type,
    queue,
    params: input.params ?? {},
    title: input.title ?? "",
    priority: input.priority ?? 0,
    origin: input.origin ?? "user",
    initiator: input.initiator ?? "",
    nodeId: input.nodeId ?? "",
    timeoutMs: input.timeoutMs ?? null,
    maxAttempts: input.maxAttempts ?? settings.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    retryDelayMs: input.retryDelayMs ?? settings.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
    retryBackoff: input.retryBackoff ?? "fixed",
    runAt: input.runAt ?? (input.delayMs ? new Date(now.getTime() + input.delayMs) : null),
    idempotencyKey: input.idempotencyKey || null,
    concurrencyKey: input.concurrencyKey || null,
    trace: input.trace ?? null,
  };
}
