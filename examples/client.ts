/**
 * An example client: `npm run example:client` (TASKQ_URL picks the server). It dispatches a report,
 * prints its log live as the worker writes it, prints the result, then runs a task that fails twice
 * before it succeeds.
 */
import { DEFAULT_URL, TaskClient } from "@taskq/sdk";

const url = process.env.TASKQ_URL ?? DEFAULT_URL;
const client = new TaskClient({ url });

const report = await client.dispatch(
  "report.generate",
  { name: "Quarterly numbers", sections: 4 },
  { title: "Quarterly report", initiator: "example-client" },
);
console.log(`dispatched report.generate as task ${report.id}`);

for await (const event of report.watch()) {
  if (event.type === "snapshot") {
    console.log(`  status: ${event.task.status}`);
    for (const step of event.task.log) console.log(`  log #${step.seq}: ${step.message}`);
  }
  if (event.type === "log") console.log(`  log #${event.step.seq}: ${event.step.message}`);
  if (event.type === "status_value") console.log(`  ${event.key} = ${JSON.stringify(event.value)}`);
  if (event.type === "status") console.log(`  status: ${event.status}`);
}
console.log(`result of task ${report.id}:`, JSON.stringify(await report.result()));

const flaky = await client.dispatch("flaky.fetch", { url: "https://example.invalid/data" }, { retryDelayMs: 300 });
console.log(`dispatched flaky.fetch as task ${flaky.id}`);
const outcome = await flaky.result();
const info = await flaky.status();
console.log(`result of task ${flaky.id}:`, JSON.stringify(outcome), `after ${info.attempts} attempts`);

client.close();
