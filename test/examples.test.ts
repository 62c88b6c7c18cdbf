/** The examples are documentation that runs: the example worker and client, end to end, as separate processes. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Harness } from "./helpers.js";
import { startTs } from "./processes.js";

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica();
});
after(() => h.close());

test("the example client sees the example worker's log live and both results", async () => {
  const env = { TASKQ_URL: h.replicas[0].server.url };
  const worker = startTs("examples/worker.ts", env);
  try {
    await worker.waitFor(/\[worker\] connected/);
    const client = startTs("examples/client.ts", env);
    const code = await client.exited;
    const out = client.output();
    assert.equal(code, 0, out);
    assert.match(out, /dispatched report\.generate as task \d+/);
    for (let i = 1; i <= 4; i++) assert.match(out, new RegExp(`log #\\d+: Section ${i}/4 written`));
    assert.match(out, /progress = 100/);
    assert.match(out, /result of task \d+: \{"pages":16,"sections":4\}/);
    assert.match(out, /result of task \d+: \{"attempt":3,"fetched":true\} after 3 attempts/);
    // Log steps were streamed while the task ran, not read back at the end: they come before "completed".
    assert.ok(out.indexOf("Section 4/4 written") < out.indexOf("status: completed"), out);
  } finally {
    worker.proc.kill("SIGTERM");
    assert.equal(await worker.exited, 0, worker.output());
  }
});
