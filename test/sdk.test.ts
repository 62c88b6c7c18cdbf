/** The SDK worker's lifecycle: graceful stop, reconnect after the server comes back; and server reflection. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { AsyncQueue } from "../sdk/internal/async-queue.js";
import { connect } from "../sdk/transport.js";
import { ServerReflection, type ServerReflectionRequest } from "../sdk/gen/grpc/reflection/v1/reflection_pb.js";
import { create } from "@bufbuild/protobuf";
import { ServerReflectionRequestSchema } from "../sdk/gen/grpc/reflection/v1/reflection_pb.js";
import { Code, TaskqError, Worker } from "../sdk/index.js";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
before(async () => (h = await Harness.create()));
after(() => h.close());

test("stop() lets a running handler finish and records its result", async () => {
  const replica = await h.replica();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const worker = h.worker({ concurrency: 2 }, replica);
  worker.register("slow", async () => {
    await gate;
    return "finished during stop";
  });
  await worker.start();
  const handle = await h.client(replica).dispatch("slow");
  await waitFor("the handler to start", () => worker.running === 1);
  const stopped = worker.stop({ graceMs: 10_000 });
  setTimeout(release, 100);
  await stopped;
  const task = await handle.status();
  assert.equal(task.status, "completed");
  assert.equal(task.result, "finished during stop");
});

test("a worker reconnects by itself when its server comes back", async () => {
  const first = await h.replica();
  const port = first.server.port;
  const events: string[] = [];
  const worker = h.worker({ concurrency: 1, onEvent: (e) => events.push(e) }, first);
  worker.register("again", (ctx) => ctx.params.n ?? null);
  await worker.start();
  await first.stop();
  h.replicas.splice(h.replicas.indexOf(first), 1);
  await waitFor("the worker to notice", () => events.includes("disconnected"));

  const second = await h.replica({ port });
  const handle = await h.client(second).dispatch("again", { n: 2 });
  assert.equal(await handle.result(), 2);
  assert.ok(events.filter((e) => e === "connected").length >= 2, events.join(", "));
});

test("server reflection lists the services and serves their descriptors", async () => {
  const replica = h.replicas.at(-1) ?? (await h.replica());
  const conn = connect({ url: replica.server.url });
  const requests = new AsyncQueue<ServerReflectionRequest>();
  const responses = createClient(ServerReflection, conn.transport).serverReflectionInfo(requests)[Symbol.asyncIterator]();
  requests.push(create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } }));
  const list = (await responses.next()).value.messageResponse;
  assert.equal(list.case, "listServicesResponse");
  const names = list.value.service.map((s: { name: string }) => s.name).sort();
  assert.deepEqual(names, ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "taskq.v1.TaskQueue", "taskq.v1.WorkerService"]);
  requests.push(create(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "taskq.v1.WorkerService" } }));
  const files = (await responses.next()).value.messageResponse;
  assert.equal(files.case, "fileDescriptorResponse");
  assert.ok(files.value.fileDescriptorProto.length >= 4, "the worker file and its imports");
  requests.push(create(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "no.such.Symbol" } }));
  assert.equal((await responses.next()).value.messageResponse.case, "errorResponse");
  requests.close();
  await responses.next();
  conn.close();
});

test("result() and watch() of an unknown task reject at once with NOT_FOUND instead of retrying", async () => {
  const replica = h.replicas[0] ?? (await h.replica());
  const client = h.client(replica);
  const started = Date.now();
  await assert.rejects(client.handle("424242424").result(), (err: TaskqError) => err instanceof TaskqError && err.code === Code.NotFound);
  await assert.rejects(async () => {
    for await (const _ of client.watch("424242424")) void _;
  }, (err: TaskqError) => err.code === Code.NotFound);
  assert.ok(Date.now() - started < 2_000, "not retried");
});

test("workers sharing one connection each get tasks, and one stopping leaves the other running", async () => {
  const replica = await h.replica();
  const connection = connect({ url: replica.server.url });
  const ran: Record<string, number> = { a: 0, b: 0 };
  const events: string[] = [];
  const make = (name: "a" | "b") => {
    const w = new Worker({ connection, name, concurrency: 1, onEvent: (event) => void events.push(`${name} ${event}`) });
    w.register("shared", async () => void ran[name]++);
    return w;
  };
  const [a, b] = [make("a"), make("b")];
  await a.start();
  await b.start();
  const client = h.client(replica);
  const first = await client.dispatchBatch(Array.from({ length: 20 }, () => ({ type: "shared" })));
  for (const t of first) await t.result();
  assert.ok(ran.a > 0 && ran.b > 0, `both ran tasks: ${JSON.stringify(ran)}`);
  await a.stop();
  const after = await client.dispatch("shared");
  assert.equal(await after.result(), null, "the other worker still runs tasks over the shared connection");
  assert.deepEqual(events.filter((e) => e.startsWith("b ")), ["b connected"], "b's stream was never cut");
  await b.stop();
  connection.close();
});
