/**
 * Single dispatches that one client makes at the same moment go to the server as one DispatchBatch.
 * A gRPC call costs the server far more than a task does (BENCHMARKS.md, (b): about 390 µs of CPU per
 * Dispatch call against 80 per task in batches), so many callers sharing a client — request handlers
 * of a web server, say — each pay for a call of their own otherwise.
 *
 * Calls made before the current turn of the microtask queue ends are gathered (up to MERGE_COUNT calls
 * and BATCH_BYTES of params), then sent: alone as a Dispatch, or together as a DispatchBatch whose
 * results are handed back call by call. Each caller still gets exactly the answer a call of its own
 * would have had:
 *   - a batch the server refuses as INVALID_ARGUMENT was refused before anything was written (the
 *     server checks every task first), so its calls are sent again one by one, and only the bad one
 *     fails, with its own message;
 *   - any other failure of a batch fails each of its calls with it, as it would have failed each alone
 *     (never sent again: after an ambiguous failure the tasks may exist, and only an idempotency key
 *     makes sending again safe);
 *   - a call made inside an active OpenTelemetry span goes alone, so that its trace context travels
 *     with it (tracing.ts injects the context of the moment the call is sent).
 * States: idle → gathering (a flush queued as a microtask, calls collected) → idle.
 */
import { isSpanContextValid, trace } from "@opentelemetry/api";
import type { Client } from "@connectrpc/connect";
import { BATCH_BYTES, bytesBound, type DispatchRequest, type TaskQueue } from "@taskq/protocol";
import { Code, TaskqError } from "../errors.js";

/** The most calls sent as one batch. */
const MERGE_COUNT = 500;

interface Gathered {
  request: DispatchRequest;
  resolve: (r: { taskId: string; created: boolean }) => void;
  reject: (err: unknown) => void;
}

export class DispatchMerger {
  private gathered: Gathered[] = [];
  private gatheredBytes = 0;

  constructor(private readonly rpc: Client<typeof TaskQueue>) {}

  /** Sends `request` as a Dispatch, or with others as part of a DispatchBatch; `paramsJsonLength` sizes it. */
  dispatch(request: DispatchRequest, paramsJsonLength: number): Promise<{ taskId: string; created: boolean }> {
    const bytes = bytesBound(paramsJsonLength, request.type.length + request.title.length + request.idempotencyKey.length + request.concurrencyKey.length);
    const traced = trace.getActiveSpan();
    if (bytes > BATCH_BYTES || (traced && isSpanContextValid(traced.spanContext()))) return this.rpc.dispatch(request);
    return new Promise((resolve, reject) => {
      if (this.gathered.length >= MERGE_COUNT || this.gatheredBytes + bytes > BATCH_BYTES) this.flush();
      if (this.gathered.length === 0) queueMicrotask(() => this.flush());
      this.gathered.push({ request, resolve, reject });
      this.gatheredBytes += bytes;
    });
  }

  private flush(): void {
    const calls = this.gathered;
    if (calls.length === 0) return;
    this.gathered = [];
    this.gatheredBytes = 0;
    if (calls.length === 1) return void this.alone(calls[0]);
    this.rpc.dispatchBatch({ tasks: calls.map((c) => c.request) }).then(
      (res) => {
        for (const [i, c] of calls.entries()) c.resolve(res.results[i]);
      },
      (err: unknown) => {
        if (TaskqError.from(err).code === Code.InvalidArgument) for (const c of calls) this.alone(c);
        else for (const c of calls) c.reject(err);
      },
    );
  }

  private alone(c: Gathered): void {
    this.rpc.dispatch(c.request).then(c.resolve, c.reject);
  }
}
