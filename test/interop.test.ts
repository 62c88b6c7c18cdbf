/**
 * Interop: a plain @grpc/grpc-js client that loads the .proto files at run time, as a client in any
 * other language would, dispatches a task, reads its status, drives a worker stream by hand, watches a
 * task live, interrupts it, sees a timeout, and reads the Active and History lists. Error messages reach
 * it, and clients of the other protocols, as the server wrote them.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { Http2SessionManager, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { TaskQueue } from "@taskq/protocol";
import { Harness, waitFor } from "./helpers.js";

// Messages as grpc-js hands them over with the options below: snake_case fields, enums and oneof cases
// by name, defaults filled in. Only the fields these tests read.
type WireValue = { numberValue?: number; stringValue?: string };
interface WireTask {
  id: string;
  status: string;
  priority_band: string;
  attempts: number;
  worker: string;
  error: string;
  display_title: string;
  display_initiator: string;
  result: WireValue;
  log: { message: string }[];
  status_values: { fields: Record<string, WireValue> };
}
/** A ServerMessage: `message` names the field that is set. */
type WireServerMessage = { message: string } & Record<string, unknown>;
interface WireLease {
  task_id: string;
  lease_token: string;
  params: { fields: Record<string, WireValue> };
}
interface WireWatchEvent {
  event: string;
  log_entry?: { message: string };
  status_change?: { status: string };
}

/**
 * The taskq.v1 services as grpc-js builds them from the .proto files at run time, which gives them no
 * static types: the streaming methods these tests call (unary ones go through `unary`).
 */
interface TaskQueueClient extends grpc.Client {
  WatchTask(req: { task_id: string }): grpc.ClientReadableStream<WireWatchEvent>;
}
interface WorkerServiceClient extends grpc.Client {
  Connect(): grpc.ClientDuplexStream<object, WireServerMessage>;
}
interface V1Services {
  TaskQueue: new (address: string, credentials: grpc.ChannelCredentials) => TaskQueueClient;
  WorkerService: new (address: string, credentials: grpc.ChannelCredentials) => WorkerServiceClient;
}

let h: Harness;
let v1: V1Services;
let address: string;
const clients: grpc.Client[] = [];

before(async () => {
  h = await Harness.create();
  const replica = await h.replica();
  address = `127.0.0.1:${replica.server.port}`;
  const definition = protoLoader.loadSync(["taskq/v1/task_queue.proto", "taskq/v1/worker.proto"], {
    includeDirs: ["packages/protocol/proto"],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const taskq = grpc.loadPackageDefinition(definition).taskq as grpc.GrpcObject;
  v1 = taskq.v1 as unknown as V1Services;
});
after(async () => {
  for (const c of clients) c.close();
  await h.close();
});

type UnaryMethod = (req: object, callback: (err: grpc.ServiceError | null, res: unknown) => void) => void;

const unary = <T>(client: grpc.Client, method: string, req: object) =>
  new Promise<T>((resolve, reject) =>
    (client as unknown as Record<string, UnaryMethod>)[method](req, (err, res) => (err ? reject(err) : resolve(res as T))),
  );

/** Takes the first message of `kind` from `received`: the field it carries, or null when none came. */
const takeMessage = <T>(received: WireServerMessage[], kind: string): T | null => {
  const i = received.findIndex((m) => m.message === kind);
  return i >= 0 ? (received.splice(i, 1)[0][kind] as T) : null;
};

test("grpc-js: dispatch, status, and a hand-driven worker stream", async () => {
  const queue = new v1.TaskQueue(address, grpc.credentials.createInsecure());
  const workers = new v1.WorkerService(address, grpc.credentials.createInsecure());
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
  const received: WireServerMessage[] = [];
  const waiters: (() => void)[] = [];
  call.on("data", (m: WireServerMessage) => {
    received.push(m);
    for (const wake of waiters.splice(0)) wake();
  });
  const next = async <T>(kind: string): Promise<T> => {
    for (;;) {
      const found = takeMessage<T>(received, kind);
      if (found !== null) return found;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  call.write({ hello: { worker_name: "grpc-js", task_types: [{ name: "interop.echo" }] } });
  call.write({ credits: { count: 1 } });
  const welcome = await next<{ session_id: string }>("welcome");
  assert.ok(welcome.session_id);
  const lease = await next<WireLease>("lease");
  assert.equal(lease.task_id, dispatched.task_id);
  assert.equal(lease.params.fields.n.numberValue, 7);
  call.write({ log_step: { task_id: lease.task_id, lease_token: lease.lease_token, message: "echoing" } });
  call.write({ status_value: { task_id: lease.task_id, lease_token: lease.lease_token, key: "progress", value: { numberValue: 100 } } });
  call.write({
    finish: { task_id: lease.task_id, lease_token: lease.lease_token, success: { result: { stringValue: "echo 7" } } },
  });
  const ack = await next<{ status: string }>("finish_ack");
  assert.equal(ack.status, "TASK_STATUS_COMPLETED");
  call.end();
  await new Promise<void>((resolve) => call.on("end", resolve));

  const done = await unary<{ task: WireTask }>(queue, "Status", { task_id: dispatched.task_id });
  assert.equal(done.task.status, "TASK_STATUS_COMPLETED");
  assert.equal(done.task.attempts, 1);
  assert.equal(done.task.worker, "grpc-js");
  assert.equal(done.task.result.stringValue, "echo 7");
  assert.deepEqual(done.task.log.map((l: { message: string }) => l.message), ["echoing"]);
  assert.equal(done.task.status_values.fields.progress.numberValue, 100);
});

test("grpc-js: an unknown task is NOT_FOUND, a bad id INVALID_ARGUMENT", async () => {
  const queue = new v1.TaskQueue(address, grpc.credentials.createInsecure());
  clients.push(queue);
  await assert.rejects(unary(queue, "Status", { task_id: "987654321" }), { code: grpc.status.NOT_FOUND });
  await assert.rejects(unary(queue, "Status", { task_id: "abc" }), { code: grpc.status.INVALID_ARGUMENT });
});

test("grpc-js reads an error message verbatim: ':' and spaces, '%', quotes, non-ASCII", async () => {
  const queue = new v1.TaskQueue(address, grpc.credentials.createInsecure());
  clients.push(queue);
  const id = "é: 100% sûr, #1/2 ✓";
  const expected = `task_id: "${id}" is not a task id (a positive decimal integer)`;
  const details = (call: Promise<unknown>) =>
    call.then(
      () => assert.fail("the call succeeded"),
      (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        return err.details;
      },
    );
  assert.equal(await details(unary(queue, "Status", { task_id: id })), expected);
  // A server stream whose error comes before any message, and one (WatchTask) as grpc-js reads it.
  const watch = queue.WatchTask({ task_id: id });
  watch.on("data", () => {});
  const watchEnd = new Promise((resolve, reject) => {
    watch.on("error", reject);
    watch.on("end", resolve);
  });
  assert.equal(await details(watchEnd), expected);
});

test("Connect, gRPC-Web and connect-es gRPC clients read the same message verbatim", async () => {
  const id = "é: 100% sûr, #1/2 ✓";
  const expected = `task_id: "${id}" is not a task id (a positive decimal integer)`;
  const baseUrl = `http://${address}`;
  const agent = new http.Agent({ keepAlive: false });
  const h2 = new Http2SessionManager(baseUrl);
  const transports = {
    "Connect over HTTP/1.1": createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { agent } }),
    "gRPC-Web over HTTP/1.1": createGrpcWebTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { agent } }),
    "Connect over HTTP/2": createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: h2 }),
    "gRPC-Web over HTTP/2": createGrpcWebTransport({ baseUrl, httpVersion: "2", sessionManager: h2 }),
    gRPC: createGrpcTransport({ baseUrl, sessionManager: h2 }),
  };
  try {
    for (const [name, transport] of Object.entries(transports)) {
      const client = createClient(TaskQueue, transport);
      await assert.rejects(client.status({ taskId: id }), (err: ConnectError) => {
        assert.equal(err.code, Code.InvalidArgument, name);
        assert.equal(err.rawMessage, expected, name);
        return true;
      });
      const stream = client.watchTask({ taskId: id });
      await assert.rejects(async () => {
        for await (const _ of stream) void _;
      }, (err: ConnectError) => {
        assert.equal(err.rawMessage, expected, `${name}, server stream`);
        return true;
      });
    }
  } finally {
    h2.abort();
    agent.destroy();
  }
});

test("grpc-js: watch a task live, interrupt it while it runs, time another out, and find both in the lists", async () => {
  const queue = new v1.TaskQueue(address, grpc.credentials.createInsecure());
  const workers = new v1.WorkerService(address, grpc.credentials.createInsecure());
  clients.push(queue, workers);
  const { task_id: id } = await unary<{ task_id: string }>(queue, "Dispatch", { type: "interop.long", title: "watch me" });

  const events: WireWatchEvent[] = [];
  const watch = queue.WatchTask({ task_id: id });
  watch.on("data", (e: WireWatchEvent) => events.push(e));
  const watchEnded = new Promise<void>((resolve, reject) => {
    watch.on("end", resolve);
    watch.on("error", reject);
  });
  await waitFor("the snapshot", () => events.length > 0);

  const call = workers.Connect();
  const received: WireServerMessage[] = [];
  call.on("data", (m: WireServerMessage) => received.push(m));
  const next = <T>(kind: string) => waitFor(kind, () => takeMessage<T>(received, kind));
  call.write({ hello: { worker_name: "grpc-js", task_types: [{ name: "interop.long" }, { name: "interop.slow" }] } });
  call.write({ credits: { count: 1 } });
  const lease = await next<WireLease>("lease");
  call.write({ log_step: { task_id: id, lease_token: lease.lease_token, message: "one" } });
  await waitFor("the log step on the watch", () => events.some((e) => e.event === "log_entry"));

  const interrupted = await unary<{ status: string }>(queue, "Interrupt", { task_id: id, reason: "from grpc-js" });
  assert.equal(interrupted.status, "TASK_STATUS_CANCELLING");
  const cancel = await next<{ reason: string }>("cancel");
  assert.equal(cancel.reason, "CANCEL_REASON_INTERRUPTED");
  const active = await unary<{ tasks: WireTask[] }>(queue, "ListActive", { statuses: ["TASK_STATUS_CANCELLING"] });
  assert.deepEqual(active.tasks.map((t) => [t.id, t.display_title]), [[id, "watch me"]]);
  call.write({ finish: { task_id: id, lease_token: lease.lease_token, success: { result: { nullValue: "NULL_VALUE" } } } });
  assert.equal((await next<{ status: string }>("finish_ack")).status, "TASK_STATUS_CANCELED");
  await watchEnded;
  assert.equal(events[0].event, "snapshot");
  assert.equal(events.find((e) => e.event === "log_entry")?.log_entry?.message, "one");
  const statuses = events.filter((e) => e.event === "status_change").map((e) => e.status_change?.status);
  assert.deepEqual(statuses, ["TASK_STATUS_RUNNING", "TASK_STATUS_CANCELLING", "TASK_STATUS_CANCELED"]);

  const { task_id: slowId } = await unary<{ task_id: string }>(queue, "Dispatch", {
    type: "interop.slow",
    timeout: { nanos: 300_000_000 },
    max_attempts: 1,
  });
  call.write({ credits: { count: 1 } });
  await next("lease");
  assert.equal((await next<{ reason: string }>("cancel")).reason, "CANCEL_REASON_TIMED_OUT");
  call.end();

  const history = await unary<{ tasks: WireTask[] }>(queue, "ListHistory", { origin: "ORIGIN_USER" });
  const byId = new Map(history.tasks.map((t) => [t.id, t]));
  assert.equal(byId.get(id)?.status, "TASK_STATUS_CANCELED");
  assert.equal(byId.get(id)?.display_initiator, "API", "a USER task dispatched without an initiator");
  assert.equal(byId.get(id)?.error, "interrupted: from grpc-js");
  assert.equal(byId.get(slowId)?.status, "TASK_STATUS_STUCK");
  assert.equal(byId.get(slowId)?.display_title, "Interop slow");
});

test("responses go uncompressed even to a client that accepts gzip; gzip requests are accepted", async () => {
  const client = h.client();
  await client.dispatchBatch(Array.from({ length: 40 }, (_, i) => ({ type: "compress.me", title: `a title long enough to add up ${i}`.padEnd(80, ".") })));
  const session = http2.connect(`http://${address}`);
  try {
    const call = (body: Buffer, headers: Record<string, string>) =>
      new Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        const req = session.request({
          ":method": "POST",
          ":path": "/taskq.v1.TaskQueue/ListActive",
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-accept-encoding": "gzip",
          ...headers,
        });
        let responseHeaders: http2.IncomingHttpHeaders = {};
        let trailers: http2.IncomingHttpHeaders = {};
        const chunks: Buffer[] = [];
        req.on("response", (hs) => (responseHeaders = hs));
        req.on("trailers", (t) => (trailers = t));
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => resolve({ headers: responseHeaders, trailers, body: Buffer.concat(chunks) }));
        req.on("error", reject);
        req.end(body);
      });
    const frame = (flag: number, payload: Buffer) => Buffer.concat([Buffer.from([flag]), Buffer.from(new Uint32Array([payload.length]).buffer).reverse(), payload]);
    const plain = await call(frame(0, Buffer.alloc(0)), {});
    assert.equal(plain.trailers["grpc-status"] ?? plain.headers["grpc-status"], "0");
    assert.ok(plain.body.length > 2_048, `a response of ${plain.body.length} bytes`);
    assert.equal(plain.body[0], 0, "the response message is not compressed");
    // (grpc-encoding may still name gzip: it says what a message flagged as compressed would use.)
    const gzipped = await call(frame(1, gzipSync(Buffer.alloc(0))), { "grpc-encoding": "gzip" });
    assert.equal(gzipped.trailers["grpc-status"] ?? gzipped.headers["grpc-status"], "0");
    assert.equal(gzipped.body.length, plain.body.length);
  } finally {
    session.close();
  }
});

test("grpc-js: the operator's calls: counts, stats, a selection interrupted, a prefix listed", async () => {
  const queue = new v1.TaskQueue(address, grpc.credentials.createInsecure());
  clients.push(queue);
  const ids: string[] = [];
  for (const type of ["ops.a.one", "ops.a.two", "ops.b"]) ids.push((await unary<{ task_id: string }>(queue, "Dispatch", { type })).task_id);

  const listed = await unary<{ tasks: { id: string }[] }>(queue, "ListActive", { type_prefix: "ops.a." });
  assert.deepEqual(listed.tasks.map((t) => t.id).sort(), ids.slice(0, 2).sort());

  const counted = await unary<{ counts: { status: string; count: number; more: boolean }[] }>(queue, "CountTasks", { type_prefix: "ops." });
  assert.deepEqual(counted.counts.find((c) => c.status === "TASK_STATUS_PENDING"), { status: "TASK_STATUS_PENDING", count: 3, more: false });

  const interrupted = await unary<{ count: number }>(queue, "InterruptMany", { filter: { ids: [ids[0], ids[2]] }, reason: "selected" });
  assert.equal(interrupted.count, 2);
  const history = await unary<{ tasks: { id: string; status: string }[] }>(queue, "ListHistory", { type_prefix: "ops.", statuses: ["TASK_STATUS_CANCELED"] });
  assert.deepEqual(history.tasks.map((t) => t.id).sort(), [ids[0], ids[2]].sort());

  // A replica samples as it starts, and then every minute (the default interval).
  const stats = await waitFor("a sample of the default queue", async () => {
    const res = await unary<{ samples: { queue: string }[]; interval: { seconds: string } }>(queue, "GetStats", { window: { seconds: 600 } });
    return res.samples.some((s) => s.queue === "default") ? res : null;
  });
  assert.equal(stats.interval.seconds, "60");
});
