/**
 * Tracing through @opentelemetry/api, a no-op unless the application registers an OpenTelemetry SDK.
 *
 * Client side: `traceInterceptor` puts the active context into the headers (gRPC metadata) of every
 * Dispatch and DispatchBatch call, as `traceparent` and `tracestate`, so the server stores it with the
 * tasks and hands it to their handlers. The transports the SDK builds (connect()) have it; add it to a
 * transport you build yourself (`interceptors: [traceInterceptor]`). It injects with the registered
 * propagator; when that wrote no `traceparent` (none registered, or one for another format) and a span is
 * active, it writes the W3C headers itself, because W3C is what the server reads.
 *
 * Worker side: each handler runs inside an active span "taskq.run <type>" (CONSUMER) whose parent is the
 * context the lease carried, extracted the same way (registered propagator, else W3C read here); the span
 * ends when the handler does, marked as an error when the attempt failed.
 */
import {
  type Context,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  ROOT_CONTEXT,
  type TextMapGetter,
  type TextMapSetter,
  context,
  createTraceState,
  isSpanContextValid,
  propagation,
  trace,
} from "@opentelemetry/api";
import type { Interceptor } from "@connectrpc/connect";
import { TaskQueue } from "@taskq/protocol";

/** The instrumentation scope of the SDK's spans. */
const TRACER_NAME = "@taskq/sdk";

const TRACED_METHODS = new Set(["Dispatch", "DispatchBatch"]);

/** version-traceid-parentid-flags; a version after 00 may add fields, which are ignored. */
const TRACE_PARENT = /^\s*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\s*$/;

const headerSetter: TextMapSetter<Headers> = { set: (headers, key, value) => headers.set(key, value) };

/**
 * A connect interceptor that sends the active OpenTelemetry context with Dispatch and DispatchBatch calls
 * (see the header); other calls pass untouched.
 */
export const traceInterceptor: Interceptor = (next) => (req) => {
  if (req.service.typeName === TaskQueue.typeName && TRACED_METHODS.has(req.method.name)) traceContextInject(req.header);
  return next(req);
};

function traceContextInject(headers: Headers): void {
  const active = context.active();
  propagation.inject(active, headers, headerSetter);
  if (headers.has("traceparent")) return;
  const spanContext = trace.getSpanContext(active);
  if (!spanContext || !isSpanContextValid(spanContext)) return;
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, "0");
  headers.set("traceparent", `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`);
  const state = spanContext.traceState?.serialize();
  if (state) headers.set("tracestate", state);
}

/** What a lease says about the task, for its run span. */
export interface RunInfo {
  taskId: string;
  type: string;
  queue: string;
  attempt: number;
  traceParent: string;
  traceState: string;
}

/** A handler's span. */
export interface RunSpan {
  /** Calls `fn` with the span active, so spans the handler starts are its children. */
  within<T>(fn: () => T): T;
  /** Ends the span, with `outcome` as its taskq.outcome attribute; marked as an error when `failed` says why. */
  end(outcome: string, failed?: string): void;
}

/** Starts the span of one attempt's handler, a child of the context the lease carried (a new trace's root without one). */
export function runSpanStart(run: RunInfo): RunSpan {
  const parent = leaseContext(run.traceParent, run.traceState);
  const span: Span = trace.getTracer(TRACER_NAME).startSpan(
    `taskq.run ${run.type}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: { "taskq.task.id": run.taskId, "taskq.task.type": run.type, "taskq.queue": run.queue, "taskq.attempt": run.attempt },
    },
    parent,
  );
  const active = trace.setSpan(parent, span);
  return {
    within: (fn) => context.with(active, fn),
    end(outcome, failed) {
      span.setAttribute("taskq.outcome", outcome);
      if (failed !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: failed });
      span.end();
    },
  };
}

const carrierGetter: TextMapGetter<Record<string, string>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

function leaseContext(traceParent: string, traceState: string): Context {
  if (!traceParent) return ROOT_CONTEXT;
  const carrier: Record<string, string> = traceState ? { traceparent: traceParent, tracestate: traceState } : { traceparent: traceParent };
  const extracted = propagation.extract(ROOT_CONTEXT, carrier, carrierGetter);
  const found = trace.getSpanContext(extracted);
  if (found && isSpanContextValid(found)) return extracted;
  const own = w3cSpanContext(traceParent, traceState);
  return own ? trace.setSpanContext(ROOT_CONTEXT, own) : ROOT_CONTEXT;
}

function w3cSpanContext(traceParent: string, traceState: string): SpanContext | null {
  const m = TRACE_PARENT.exec(traceParent);
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5] !== undefined)) return null;
  const spanContext: SpanContext = {
    traceId: m[2],
    spanId: m[3],
    traceFlags: Number.parseInt(m[4], 16),
    isRemote: true,
    traceState: traceState ? createTraceState(traceState) : undefined,
  };
  return isSpanContextValid(spanContext) ? spanContext : null;
}
