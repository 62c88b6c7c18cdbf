/**
 * The conformance worker of the TypeScript SDK: the task types of the conformance contract
 * (scripts/conformance.ts), run by a @taskq/sdk Worker against TASKQ_URL with TASKQ_TOKEN. It prints
 * `conformance worker ready` once the server has welcomed it, and on SIGTERM or SIGINT stops
 * gracefully (running tasks finish) and exits 0.
 *
 * CONFORMANCE_BREAK=echo makes conformance.echo return wrong data: test/conformance.test.ts proves
 * with it that the harness can fail.
 */
import { setTimeout as delay } from "node:timers/promises";
import { RetryableError, Worker, type TaskContext } from "@taskq/sdk";

const worker = new Worker({
  url: process.env.TASKQ_URL,
  token: process.env.TASKQ_TOKEN || undefined,
  name: `conformance-ts:${process.pid}`,
  // On stderr, for the harness's report of a failed run: connects, disconnects, rejected messages.
  onEvent: (event, detail) => console.error(`[worker] ${event}${detail ? ` ${JSON.stringify(detail)}` : ""}`),
});
const breakEcho = process.env.CONFORMANCE_BREAK === "echo";

/** Sleeps `ms`; with a signal, wakes when it aborts and throws its reason (the SDK's TaskAbortedError). */
async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw err;
  }
}

const int = (ctx: TaskContext, key: string): number => {
  const value = ctx.params[key];
  if (typeof value !== "number" || !Number.isInteger(value)) throw new Error(`params.${key}: an integer is required`);
  return value;
};

worker
  .register("conformance.echo", (ctx) => (breakEcho ? { ...ctx.params, broken: true } : ctx.params))
  .register("conformance.log", (ctx) => {
    const steps = int(ctx, "steps");
    for (let i = 1; i <= steps; i++) ctx.log(`step ${i}`);
    return { logged: steps };
  })
  .register("conformance.progress", (ctx) => {
    for (const value of ctx.params.values as number[]) ctx.progress(value);
    ctx.setStatus("phase", "done");
    return {};
  })
  .register("conformance.fail", (ctx) => {
    throw new Error(String(ctx.params.message));
  })
  .register("conformance.retry", (ctx) => {
    const times = int(ctx, "times");
    if (ctx.attempt <= times) throw new RetryableError(`retry ${times}`, { delayMs: int(ctx, "delay_ms") });
    return { attempt: ctx.attempt };
  })
  .register("conformance.sleep", async (ctx) => {
    const ms = int(ctx, "ms");
    await sleep(ms, ctx.signal);
    return { slept: ms };
  })
  .register("conformance.ignore_cancel", async (ctx) => {
    await sleep(int(ctx, "ms"));
    return { done: true };
  })
  .register(
    "conformance.timeout",
    async (ctx) => {
      await sleep(60_000, ctx.signal);
      return {};
    },
    { timeoutMs: 300 },
  )
  .register("conformance.large_result", (ctx) => ({ data: "x".repeat(int(ctx, "bytes")) }))
  .register("conformance.context", (ctx) => ({
    attempt: ctx.attempt,
    max_attempts: ctx.maxAttempts,
    idempotency_key: ctx.idempotencyKey,
    concurrency_key: ctx.concurrencyKey,
    type: ctx.type,
    queue: ctx.queue,
    id: ctx.id,
  }));

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await worker.stop();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());

await worker.start();
console.log("conformance worker ready");
