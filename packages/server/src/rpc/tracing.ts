/**
 * The trace context of a Dispatch or DispatchBatch call, and its taskq.dispatch span (engine/tracing.ts
 * lists the server's spans). The rule for what the dispatched tasks store:
 *
 *   1. The caller's context is what the host's propagator extracts from the request headers (the gRPC
 *      metadata); when that finds none (no propagator registered, or one for another format), the W3C
 *      `traceparent` and `tracestate` headers as read here. A malformed traceparent counts as none: W3C
 *      says to ignore it, so the call is not refused for it.
 *   2. The taskq.dispatch span starts as a child of that context (the root of a new trace when there is
 *      none), and the dispatch runs with it active.
 *   3. The tasks store the dispatch span's context, in W3C form. Without an OpenTelemetry SDK in the
 *      server the span is a no-op that carries its parent's context unchanged, so the tasks store the
 *      traceparent and tracestate the caller sent; without an SDK and without a caller's context they
 *      store nothing (two nulls), and no lease or finish span is ever attempted for them.
 */
import { type Attributes, type Context, ROOT_CONTEXT, type TextMapGetter, context, isSpanContextValid, propagation, trace } from "@opentelemetry/api";
import { contextFromTrace, dispatchSpanStart, spanEnd, traceOf, type TraceContext } from "../engine/index.js";

const headerGetter: TextMapGetter<Headers> = {
  keys: (headers) => [...headers.keys()],
  get: (headers, key) => headers.get(key) ?? undefined,
};

/**
 * Runs `dispatch` inside the call's taskq.dispatch span, handing it the trace context to store with the
 * tasks (null: none); `describe` adds what the result tells (the task ids) to the span.
 */
export async function dispatchTraced<T>(
  headers: Headers,
  attributes: Attributes,
  dispatch: (trace: TraceContext | null) => Promise<T>,
  describe: (result: T) => Attributes,
): Promise<T> {
  const parent = callerContext(headers);
  const span = dispatchSpanStart(parent, attributes);
  try {
    const result = await context.with(trace.setSpan(parent, span), () => dispatch(traceOf(span.spanContext())));
    span.setAttributes(describe(result));
    spanEnd(span);
    return result;
  } catch (err) {
    spanEnd(span, err);
    throw err;
  }
}

function callerContext(headers: Headers): Context {
  const extracted = propagation.extract(ROOT_CONTEXT, headers, headerGetter);
  const found = trace.getSpanContext(extracted);
  if (found && isSpanContextValid(found)) return extracted;
  const parent = headers.get("traceparent");
  return (parent !== null && contextFromTrace(parent, headers.get("tracestate"))) || ROOT_CONTEXT;
}
