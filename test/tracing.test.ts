/**
 * Tracing: the W3C trace context of a dispatch reaches the task's handler, over gRPC, from the SDK's
 * active OpenTelemetry context and from a plain client's `traceparent` metadata, with the server's spans
 * (taskq.dispatch → taskq.lease → taskq.run / taskq.finish) in the one trace. The test process registers
 * an OpenTelemetry SDK with an in-memory exporter; the server, the client and the worker all run in it,
 * so they share it, as a host that configured an exporter would. Tests that need the server without
 * OpenTelemetry switch it off (the API falls back to its no-ops) and on again.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { RetryableError, type Worker } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

function tracingOn(): void {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
}

function tracingOff(): void {
  trace.disable();
  propagation.disable();
  context.disable();
}

/** Runs `fn` with no OpenTelemetry SDK registered in the process (the server's, the client's and the worker's API are no-ops). */
async function withoutTracing<T>(fn: () => Promise<T>): Promise<T> {
  tracingOff();
  try {
    return await fn();
  } finally {
    tracingOn();
  }
}

/** What a handler saw: the context's trace fields, and the span active while it ran. */
interface Seen {
  traceParent: string;
  traceState: string;
  activeTraceId: string | undefined;
  activeSpanId: string | undefined;
}

let h: Harness;
let worker: Worker;
let address: string;
const seen = new Map<string, Seen>();
let queueService: grpc.Client;

before(async () => {
  tracingOn();
  h = await Harness.create();
  const replica = await h.replica();
  address = `127.0.0.1:${replica.server.port}`;
  worker = h.worker();
  const record = (ctx: { id: string; traceParent: string; traceState: string }) => {
    const active = trace.getActiveSpan()?.spanContext();
    seen.set(ctx.id, { traceParent: ctx.traceParent, traceState: ctx.traceState, activeTraceId: active?.traceId, activeSpanId: active?.spanId });
  };
  worker.register("traced.job", (ctx) => {
    record(ctx);
    return "done";
  });
  worker.register("traced.fail", (ctx) => {
    record(ctx);
    throw new Error("it broke");
  });
  worker.register("traced.retry", (ctx) => {
    if (ctx.attempt === 1) throw new RetryableError("once more", { delayMs: 0 });
    record(ctx);
    return "second time";
  });
  await worker.start();
  const definition = protoLoader.loadSync(["taskq/v1/task_queue.proto"], { includeDirs: ["packages/protocol/proto"], keepCase: true });
  const v1 = (grpc.loadPackageDefinition(definition).taskq as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const TaskQueue = v1.TaskQueue as unknown as new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;
  queueService = new TaskQueue(address, grpc.credentials.createInsecure());
});

after(async () => {
  queueService.close();
  await h.close();
  tracingOff();
});

const seenBy = (taskId: string) => waitFor(`task ${taskId}'s handler`, () => seen.get(taskId));

/** The spans of one trace, once its taskq.finish span has ended (it ends after the outcome is written). */
async function traceSpans(traceId: string): Promise<ReadableSpan[]> {
  const inTrace = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
  await waitFor(`trace ${traceId}'s finish span`, () => inTrace().some((s) => s.name === "taskq.finish"));
  return inTrace();
}

function only(spans: ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name);
  assert.equal(found.length, 1, `one ${name} span, got ${found.length}: ${spans.map((s) => s.name).join(", ")}`);
  return found[0];
}

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

/** Dispatch through the plain grpc-js client, with these metadata headers; resolves with the task id. */
function plainDispatch(type: string, headers: Record<string, string>): Promise<string> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  type Dispatch = (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: { task_id: string }) => void) => void;
  const dispatch = (queueService as unknown as Record<string, Dispatch>).Dispatch.bind(queueService);
  return new Promise((resolve, reject) => dispatch({ type }, metadata, (err, res) => (err ? reject(err) : resolve(res.task_id))));
}

test("SDK: one trace from the dispatching client's span through taskq.dispatch and taskq.lease to the handler's taskq.run, and taskq.finish", async () => {
  const client = h.client();
  const tracer = trace.getTracer("test-client");
  const { taskId, clientSpan } = await tracer.startActiveSpan("client.operation", async (span) => {
    try {
      const handle = await client.dispatch("traced.job", { n: 1 });
      return { taskId: handle.id, clientSpan: span.spanContext() };
    } finally {
      span.end();
    }
  });
  const handlerSaw = await seenBy(taskId);
  const spans = await traceSpans(clientSpan.traceId);

  const dispatch = only(spans, "taskq.dispatch");
  const lease = only(spans, "taskq.lease");
  const run = only(spans, "taskq.run traced.job");
  const finish = only(spans, "taskq.finish");
  assert.equal(parentOf(dispatch), clientSpan.spanId, "the dispatch span is the client span's child");
  assert.equal(parentOf(lease), dispatch.spanContext().spanId, "the lease span is the dispatch span's child");
  assert.equal(parentOf(run), lease.spanContext().spanId, "the handler's span is the lease span's child");
  assert.equal(parentOf(finish), lease.spanContext().spanId, "the finish span is the lease span's child");
  assert.equal(dispatch.kind, SpanKind.SERVER);
  assert.equal(run.kind, SpanKind.CONSUMER);
  assert.equal(dispatch.attributes["taskq.task.id"], taskId);
  assert.equal(dispatch.attributes["taskq.task.type"], "traced.job");
  assert.equal(lease.attributes["taskq.attempt"], 1);
  assert.equal(run.attributes["taskq.outcome"], "success");
  assert.equal(finish.attributes["taskq.task.status"], "completed");

  // The handler saw the lease span's context, and ran with its own span active.
  assert.equal(handlerSaw.traceParent, `00-${clientSpan.traceId}-${lease.spanContext().spanId}-01`);
  assert.equal(handlerSaw.traceState, "");
  assert.equal(handlerSaw.activeTraceId, clientSpan.traceId);
  assert.equal(handlerSaw.activeSpanId, run.spanContext().spanId);
});

test("SDK: DispatchBatch stores the batch's dispatch span with every task; a failed attempt's run span is an error; tracestate goes along", async () => {
  const client = h.client();
  const tracer = trace.getTracer("test-client");
  // The client runs inside a trace that came to it with a tracestate.
  const withState = propagation.extract(ROOT_CONTEXT, { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "vendor=abc" });
  const { ids, traceId } = await context.with(withState, () =>
    tracer.startActiveSpan("client.batch", async (span) => {
      try {
        const handles = await client.dispatchBatch([{ type: "traced.job" }, { type: "traced.fail", maxAttempts: 1 }]);
        return { ids: handles.map((t) => t.id), traceId: span.spanContext().traceId };
      } finally {
        span.end();
      }
    }),
  );
  assert.equal(traceId, "0af7651916cd43dd8448eb211c80319c");
  const [ok, failed] = await Promise.all(ids.map(seenBy));
  await waitFor("both finish spans", () => exporter.getFinishedSpans().filter((s) => s.name === "taskq.finish" && s.spanContext().traceId === traceId).length === 2);
  const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);

  const dispatch = only(spans, "taskq.dispatch");
  assert.equal(dispatch.attributes["taskq.task.count"], 2);
  const leases = spans.filter((s) => s.name === "taskq.lease");
  assert.equal(leases.length, 2);
  for (const lease of leases) assert.equal(parentOf(lease), dispatch.spanContext().spanId);
  assert.match(ok.traceParent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
  assert.equal(ok.traceState, "vendor=abc");
  assert.equal(failed.traceState, "vendor=abc");

  const failedRun = only(spans, "taskq.run traced.fail");
  assert.equal(failedRun.status.code, SpanStatusCode.ERROR);
  assert.equal(failedRun.status.message, "it broke");
  assert.equal(failedRun.attributes["taskq.outcome"], "failure");
  assert.notEqual(only(spans, "taskq.run traced.job").status.code, SpanStatusCode.ERROR);
});

test("a retried task's every attempt is leased in the trace it was dispatched in", async () => {
  const client = h.client();
  const { taskId, traceId } = await trace.getTracer("test-client").startActiveSpan("client.operation", async (span) => {
    try {
      return { taskId: (await client.dispatch("traced.retry")).id, traceId: span.spanContext().traceId };
    } finally {
      span.end();
    }
  });
  await seenBy(taskId);
  await waitFor("both finish spans", () => exporter.getFinishedSpans().filter((s) => s.name === "taskq.finish" && s.spanContext().traceId === traceId).length === 2);
  const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
  const dispatch = only(spans, "taskq.dispatch");
  const leases = spans.filter((s) => s.name === "taskq.lease");
  assert.deepEqual(leases.map((s) => s.attributes["taskq.attempt"]).sort(), [1, 2]);
  for (const lease of leases) assert.equal(parentOf(lease), dispatch.spanContext().spanId);
  assert.deepEqual(spans.filter((s) => s.name === "taskq.run traced.retry").map((s) => s.attributes["taskq.outcome"]).sort(), ["retry", "success"]);
});

test("without a registered propagator, the SDK and the server still speak W3C: the client's span is the dispatch span's parent", async () => {
  propagation.disable();
  try {
    const client = h.client();
    const { taskId, clientSpan } = await trace.getTracer("test-client").startActiveSpan("client.operation", async (span) => {
      try {
        return { taskId: (await client.dispatch("traced.job")).id, clientSpan: span.spanContext() };
      } finally {
        span.end();
      }
    });
    const handlerSaw = await seenBy(taskId);
    const spans = await traceSpans(clientSpan.traceId);
    assert.equal(parentOf(only(spans, "taskq.dispatch")), clientSpan.spanId);
    assert.equal(handlerSaw.activeSpanId, only(spans, "taskq.run traced.job").spanContext().spanId);
    assert.equal(parentOf(only(spans, "taskq.run traced.job")), only(spans, "taskq.lease").spanContext().spanId);
  } finally {
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  }
});

test("plain gRPC client: a traceparent sent as metadata is the parent of the dispatch span, and the handler continues that trace", async () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const taskId = await plainDispatch("traced.job", { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
  const handlerSaw = await seenBy(taskId);
  const spans = await traceSpans(traceId);
  const dispatch = only(spans, "taskq.dispatch");
  assert.equal(parentOf(dispatch), "00f067aa0ba902b7");
  assert.equal(handlerSaw.activeTraceId, traceId);
  assert.equal(handlerSaw.traceParent, `00-${traceId}-${only(spans, "taskq.lease").spanContext().spanId}-01`);
});

test("plain gRPC client, server without OpenTelemetry: the traceparent and tracestate sent reach the handler as they were sent", async () => {
  const traceparent = "00-5bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-01";
  const tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
  const taskId = await withoutTracing(async () => {
    const id = await plainDispatch("traced.job", { traceparent, tracestate });
    // Finished before OpenTelemetry comes back, so no finish span could be recorded either.
    await h.client().handle(id).result();
    return id;
  });
  const handlerSaw = seen.get(taskId)!;
  assert.equal(handlerSaw.traceParent, traceparent);
  assert.equal(handlerSaw.traceState, tracestate);
  assert.equal(exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === "5bf92f3577b34da6a3ce929d0e0e4737").length, 0, "no spans were recorded");
});

test("a malformed traceparent is ignored, not refused; a task dispatched outside any trace stores nothing and leases with empty trace fields", async () => {
  await withoutTracing(async () => {
    const malformed = await plainDispatch("traced.job", { traceparent: "00-not-a-trace-01" });
    const client = h.client();
    const untraced = (await client.dispatch("traced.job")).id;
    for (const id of [malformed, untraced]) {
      const handlerSaw = await seenBy(id);
      assert.equal(handlerSaw.traceParent, "");
      assert.equal(handlerSaw.traceState, "");
      assert.equal(handlerSaw.activeTraceId, undefined);
    }
  });
  // Stored as nulls: a task still in the table (nothing leases type "traced.idle").
  await withoutTracing(async () => {
    const id = (await h.client().dispatch("traced.idle")).id;
    const { rows } = await h.pool.query("select trace_parent, trace_state from taskq.tasks where id = $1", [id]);
    assert.deepEqual(rows, [{ trace_parent: null, trace_state: null }]);
  });
});

test("with OpenTelemetry in the server, a dispatch outside any trace starts one at taskq.dispatch, and the handler continues it", async () => {
  const taskId = (await h.client().dispatch("traced.job")).id;
  const handlerSaw = await seenBy(taskId);
  assert.ok(handlerSaw.activeTraceId);
  const spans = await traceSpans(handlerSaw.activeTraceId);
  const dispatch = only(spans, "taskq.dispatch");
  assert.equal(dispatch.parentSpanContext, undefined, "the dispatch span is the trace's root");
  assert.equal(dispatch.attributes["taskq.task.id"], taskId);
  assert.equal(parentOf(only(spans, "taskq.run traced.job")), only(spans, "taskq.lease").spanContext().spanId);
});
