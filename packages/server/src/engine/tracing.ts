/**
 * Tracing through @opentelemetry/api: a no-op unless the host process registers an OpenTelemetry SDK
 * (a tracer provider, a context manager and a propagator) before it starts the server.
 *
 * A task carries the W3C trace context it was dispatched under (TraceContext, stored in tasks.trace_parent
 * and tasks.trace_state) from its dispatch to every lease of it. The spans the server records:
 *
 *   taskq.dispatch  (SERVER)    one Dispatch or DispatchBatch call, a child of the caller's context (see
 *                               rpc/tracing.ts); its context is what the tasks store
 *   taskq.lease     (INTERNAL)  a lease handed to a worker, a child of the stored context; its context is
 *                               what the Lease carries, so the worker's handler span is its child
 *   taskq.finish    (INTERNAL)  a worker's finish (or a lease given back) being recorded, a child of the
 *                               lease span
 *
 * Per task, nothing happens without a context: no span, no formatting, two nulls in the row. The stored
 * form is always W3C (whatever propagator the host uses), because the Lease message defines it so.
 */
import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  createTraceState,
  isSpanContextValid,
  trace,
} from "@opentelemetry/api";
import type { FinishedAs, TraceContext } from "./types.js";

/** The instrumentation scope of the server's spans. */
const TRACER_NAME = "@taskq/server";

/** W3C: at least 512 characters of tracestate are propagated; past that, entries are dropped from the end. */
const MAX_TRACE_STATE_LENGTH = 512;

/** version-traceid-parentid-flags; a version after 00 may add fields, which are ignored. */
const TRACE_PARENT = /^\s*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\s*$/;

/** Looked up per use, not kept: a host may register its provider after the server has started. */
const tracer = () => trace.getTracer(TRACER_NAME);

/**
 * A W3C traceparent (and tracestate) as a context to start spans in, or null when the traceparent is not
 * one (a malformed header is ignored, as the W3C recommendation says, not refused).
 */
export function contextFromTrace(parent: string, state: string | null | undefined): Context | null {
  const m = TRACE_PARENT.exec(parent);
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5] !== undefined)) return null;
  const spanContext: SpanContext = {
    traceId: m[2],
    spanId: m[3],
    traceFlags: Number.parseInt(m[4], 16),
    isRemote: true,
    traceState: state ? createTraceState(state) : undefined,
  };
  return isSpanContextValid(spanContext) ? trace.setSpanContext(ROOT_CONTEXT, spanContext) : null;
}

/** A span context in the stored W3C form, or null when it is not valid (a no-op span outside any trace). */
export function traceOf(spanContext: SpanContext): TraceContext | null {
  if (!isSpanContextValid(spanContext)) return null;
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, "0");
  return { parent: `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`, state: traceStateText(spanContext.traceState?.serialize()) };
}

/** A tracestate as stored: null when empty, held to MAX_TRACE_STATE_LENGTH by dropping entries from the end. */
function traceStateText(state: string | null | undefined): string | null {
  if (!state) return null;
  let text = state.trim();
  while (text.length > MAX_TRACE_STATE_LENGTH) {
    const cut = text.lastIndexOf(",");
    text = cut < 0 ? "" : text.slice(0, cut);
  }
  return text || null;
}

/** Starts the span of a Dispatch or DispatchBatch call as a child of `parent` (ROOT_CONTEXT: a new trace). */
export function dispatchSpanStart(parent: Context, attributes: Attributes): Span {
  return tracer().startSpan("taskq.dispatch", { kind: SpanKind.SERVER, attributes }, parent);
}

/** Ends a span, marked as failed with `err` when given. */
export function spanEnd(span: Span, err?: unknown): void {
  if (err !== undefined) {
    span.recordException(err instanceof Error ? err : String(err));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  }
  span.end();
}

/**
 * Records that a lease of a traced task was handed out (a span started and ended now) and returns the
 * context the lease carries to the worker: the lease span's while spans are recorded, else the stored one
 * unchanged (so a context stored without a tracer reaches the handler verbatim). Null in, null out, at no cost.
 */
export function leaseSpanRecord(stored: TraceContext | null, attributes: Attributes): TraceContext | null {
  if (stored === null) return null;
  const parent = contextFromTrace(stored.parent, stored.state);
  if (parent === null) return stored;
  const span = tracer().startSpan("taskq.lease", { kind: SpanKind.INTERNAL, attributes }, parent);
  const recording = span.isRecording(); // false once ended
  span.end();
  return recording ? (traceOf(span.spanContext()) ?? stored) : stored;
}

/**
 * Runs `write`, which records a lease's outcome and says where its task went (null: the lease was no
 * longer held), inside a taskq.finish span, a child of the lease's context; for an untraced lease, just
 * runs it.
 */
export async function finishTraced(lease: TraceContext | null, attributes: Attributes, write: () => Promise<FinishedAs | null>): Promise<FinishedAs | null> {
  const parent = lease === null ? null : contextFromTrace(lease.parent, lease.state);
  if (parent === null) return write();
  const span = tracer().startSpan("taskq.finish", { kind: SpanKind.INTERNAL, attributes }, parent);
  try {
    const status = await write();
    span.setAttribute("taskq.finish.accepted", status !== null);
    if (status !== null) span.setAttribute("taskq.task.status", status);
    spanEnd(span);
    return status;
  } catch (err) {
    spanEnd(span, err);
    throw err;
  }
}
