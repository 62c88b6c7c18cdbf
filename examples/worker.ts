/**
 * An example worker process: `npm run example:worker` (TASKQ_URL picks the server). Its handlers are in
 * examples/handlers.ts.
 */
import { url, worker } from "./handlers.js";

await worker.start();
console.log(`[worker] running report.generate and flaky.fetch against ${url}; Ctrl-C to stop`);

const stop = async () => {
  console.log("[worker] stopping: finishing running tasks");
  await worker.stop({ graceMs: 10_000 });
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
