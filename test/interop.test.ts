/**
 * Interop: a plain @grpc/grpc-js client that loads the .proto files at run time, as a client in any
 * other language would, dispatches a task, reads its status, and drives a worker stream by hand.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Harness } from "./helpers.js";

let h: Harness;
let pkg: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a run-time loaded package has no static type
let address: string;
const clients: grpc.Client[] = [];

before(async () => {
  h = await Harness.create();
  const replica = await h.replica();
  address = `127.0.0.1:${replica.server.port}`;
  const definition = protoLoader.loadSync(["taskq/v1/task_queue.proto", "taskq/v1/worker.proto"], {
    includeDirs: ["proto"],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  pkg = grpc.loadPackageDefinition(definition).taskq;
});
after(async () => {
  for (const c of clients) c.close();
  await h.close();
});

const unary = <T>(client: grpc.Client, method: string, req: object) =>
  new Promise<T>((resolve, reject) =>
    (client as unknown as Record<string, Function>)[method](req, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))),
  );

test("grpc-js: dispatch, status, and a hand-driven worker stream", async () => {
  const queue = new pkg.v1.TaskQueue(address, grpc.credentials.createInsecure());
  const workers = new pkg.v1.WorkerService(address, grpc.credentials.createInsecure());
  clients.push(queue, workers);

  const dispatched = await unary<{ task_id: string; created: boolean }>(queue, "Dispatch", {
    type: "interop.echo",
    params: { fields: { n: { numberValue: 7 } } },
    title: "from grpc-js",
    priority: 10,
  });
  assert.match(dispatched.task_id, /^\d+$/);
  assert.equal(dispatched.created, true);

  const pending = await unary<{ task: { status: string; priority_band: string } }>(queue, "Status", { task_id: dispatched.task_id });
  assert.equal(pending.task.status, "TASK_STATUS_PENDING");
  assert.equal(pending.task.priority_band, "PRIORITY_BAND_HIGH");

  const call = workers.Connect();
  const received: any[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  const waiters: (() => void)[] = [];
  call.on("data", (m: unknown) => {
    received.push(m);
    waiters.splice(0).forEach((w) => w());
  });
  const next = async (kind: string) => {
    for (;;) {
      const i = received.findIndex((m) => m.message === kind);
      if (i >= 0) return received.splice(i, 1)[0][kind];
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  call.write({ hello: { worker_name: "grpc-js", task_types: [{ name: "interop.echo" }] } });
  call.write({ credits: { count: 1 } });
  const welcome = await next("welcome");
  assert.ok(welcome.session_id);
  const lease = await next("lease");
  assert.equal(lease.task_id, dispatched.task_id);
  assert.equal(lease.params.fields.n.numberValue, 7);
  call.write({ log_step: { task_id: lease.task_id, lease_token: lease.lease_token, message: "echoing" } });
  call.write({ status_value: { task_id: lease.task_id, lease_token: lease.lease_token, key: "progress", value: { numberValue: 100 } } });
  call.write({
    finish: { task_id: lease.task_id, lease_token: lease.lease_token, success: { result: { stringValue: "echo 7" } } },
  });
  const ack = await next("finish_ack");
  assert.equal(ack.status, "TASK_STATUS_COMPLETED");
  call.end();
  await new Promise<void>((resolve) => call.on("end", resolve));

  const done = await unary<{ task: any }>(queue, "Status", { task_id: dispatched.task_id }); // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(done.task.status, "TASK_STATUS_COMPLETED");
  assert.equal(done.task.attempts, 1);
  assert.equal(done.task.worker, "grpc-js");
  assert.equal(done.task.result.stringValue, "echo 7");
  assert.deepEqual(done.task.log.map((l: { message: string }) => l.message), ["echoing"]);
  assert.equal(done.task.status_values.fields.progress.numberValue, 100);
});

test("grpc-js: an unknown task is NOT_FOUND, a bad id INVALID_ARGUMENT", async () => {
  const queue = new pkg.v1.TaskQueue(address, grpc.credentials.createInsecure());
  clients.push(queue);
  await assert.rejects(unary(queue, "Status", { task_id: "987654321" }), { code: grpc.status.NOT_FOUND });
  await assert.rejects(unary(queue, "Status", { task_id: "abc" }), { code: grpc.status.INVALID_ARGUMENT });
});
