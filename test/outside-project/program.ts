/**
 * A user's program, as test/packages.test.ts compiles and runs it outside the repository: it knows the
 * packages by name only ("@taskq/sdk", "@taskq/sdk/client"), through their exports maps and .d.ts, and
 * runs under plain node. A Worker runs one task type; a TaskClient dispatches a task of it, watches it
 * to its end and awaits its result. The last line it prints is "task <id> completed: <result as JSON>".
 * TASKQ_URL names the server.
 */
import { TaskClient, Worker } from "@taskq/sdk";
import type { TaskClient as PortableTaskClient, TaskStatusName, WatchEvent } from "@taskq/sdk/client";

/** The log messages and the status a watch event carries; a snapshot has both (the task may have finished before the watch began). */
function seenIn(event: WatchEvent): { messages: string[]; status?: TaskStatusName } {
  if (event.type === "snapshot") return { messages: event.task.log.map((step) => step.message), status: event.task.status };
  if (event.type === "log") return { messages: [event.step.message] };
  if (event.type === "status") return { messages: [], status: event.status };
  return { messages: [] };
}

const url = process.env.TASKQ_URL;
if (!url) throw new Error("TASKQ_URL is not set");

const worker = new Worker({ url, name: "outside-project" });
worker.register("outside.greet", (ctx) => {
  ctx.log(`greeting ${String(ctx.params.name)}`);
  return { greeting: `hello, ${String(ctx.params.name)}` };
});
await worker.start();

// The browser-safe entry's TaskClient is the one the Node entry's extends: Node code can hand its client
// to code written against "@taskq/sdk/client".
const client = new TaskClient({ url });
const portable: PortableTaskClient = client;
const task = await portable.dispatch("outside.greet", { name: "world" });

const logged: string[] = [];
let status: TaskStatusName | undefined;
for await (const event of task.watch()) {
  const seen = seenIn(event);
  logged.push(...seen.messages);
  status = seen.status ?? status;
}
if (!logged.includes("greeting world")) throw new Error(`the watch missed the log step: ${JSON.stringify(logged)}`);
if (status !== "completed") throw new Error(`the watch ended at ${status}, not completed`);

const result = await task.result<{ greeting: string }>();
if (result.greeting !== "hello, world") throw new Error(`unexpected result ${JSON.stringify(result)}`);

client.close();
await worker.stop();
// No process.exit: the program ends only if the client and worker let go of everything they opened.
console.log(`task ${task.id} completed: ${JSON.stringify(result)}`);
