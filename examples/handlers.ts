/**
 * The example worker's handlers, on a Worker that is not started: examples/worker.ts starts it against
 * a server, and `npx taskq run examples/handlers.ts <type> --key=value` runs one handler right here
 * (immediate mode), with no server. TASKQ_URL picks the server.
 *
 *   report.generate  logs each step and reports progress, then returns a summary
 *   flaky.fetch      fails with a retryable error on its first two attempts, succeeds on the third
 */
import { DEFAULT_URL, RetryableError, Worker } from "@taskq/sdk";

export const url = process.env.TASKQ_URL ?? DEFAULT_URL;

export const worker = new Worker({
  url,
  name: `example-worker:${process.pid}`,
  concurrency: 4,
  onEvent: (event, detail) => console.log(`[worker] ${event}`, detail ?? ""),
});

worker.register("report.generate", async (ctx) => {
  const sections = Number(ctx.params.sections ?? 3);
  ctx.log(`Generating report "${ctx.params.name ?? "untitled"}" with ${sections} sections`);
  for (let i = 1; i <= sections; i++) {
    if (ctx.signal.aborted) throw new Error("interrupted");
    await new Promise((r) => setTimeout(r, 150));
    ctx.log(`Section ${i}/${sections} written`);
    ctx.progress(Math.round((i / sections) * 100));
  }
  ctx.log("Report complete");
  return { sections, pages: sections * 4 };
});

worker.register("flaky.fetch", async (ctx) => {
  ctx.log(`Fetching ${ctx.params.url ?? "https://example.invalid"} (attempt ${ctx.attempt} of ${ctx.maxAttempts})`);
  if (ctx.attempt < 3) throw new RetryableError(`upstream timed out on attempt ${ctx.attempt}`);
  return { fetched: true, attempt: ctx.attempt };
});
