/**
 * Batches on the worker stream: several leases in one ServerMessage, several finishes (and their
 * credits) in one WorkerMessage, only between sides that said they understand them, within the
 * count and size budget; malformed batches end the stream with a clear code.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { create, fromJson, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AsyncQueue } from "@taskq/protocol";
import { BATCH_BYTES, MAX_BATCH_MESSAGES } from "@taskq/protocol";
import { TaskStatus } from "@taskq/protocol";
import {
  ServerMessageSchema,
  WorkerMessageSchema,
  WorkerService,
  type Lease,
  type ServerMessage,
  type WorkerMessage,
} from "@taskq/protocol";
import { Worker } from "@taskq/sdk";
import { Harness, waitFor } from "./helpers.js";

let h: Harness;
before(async () => {
  h = await Harness.create();
  await h.replica();
});
after(() => h.close());

const leasesIn = (m: ServerMessage["message"]): Lease[] =>
  m.case === "lease" ? [m.value] : m.case === "batch" ? m.value.messages.flatMap((x) => leasesIn(x.message)) : [];

test("AsyncQueue.batches: what is queued, in order, within the count and the bytes; a large item alone", async () => {
  const q = new AsyncQueue<number>();
  for (const n of [1, 1, 1, 1, 1, 9, 1, 1, 20, 1]) q.push(n);
  q.close();
  const got: number[][] = [];
  for await (const b of q.batches((n) => n, { count: 3, bytes: 10 })) got.push(b);
  assert.deepEqual(got, [[1, 1, 1], [1, 1], [9, 1], [1], [20], [1]]);
});

test("a worker that accepts batches gets leases claimed together as one message, and may finish them as one", async () => {
  const client = h.client();
  const ids = (await client.dispatchBatch(Array.from({ length: 20 }, (_, i) => ({ type: "batched", params: { i } })))).map((t) => t.id);
  const w = h.rawWorker();
  w.hello(["batched"], 20, [], true);
  const welcome = await w.next("welcome");
  assert.equal(welcome.acceptsBatches, true);

  const leases: Lease[] = [];
  let batches = 0;
  while (leases.length < 20) {
    const m = await w.nextOf(["lease", "batch"]);
    if (m.case === "batch") batches++;
    leases.push(...leasesIn(m));
  }
  assert.ok(batches >= 1, "the claimed leases came in at least one batch");
  assert.deepEqual(leases.map((l) => l.taskId).sort(), [...ids].sort());

  // Every finish, a log step before one of them, and the credits, as one message.
  const finish = (l: Lease) => {
    const result = fromJson(ValueSchema, Number(l.params?.i));
    return create(WorkerMessageSchema, { message: { case: "finish", value: { taskId: l.taskId, leaseToken: l.leaseToken, outcome: { case: "success", value: { result } } } } });
  };
  const logStep = create(WorkerMessageSchema, { message: { case: "logStep", value: { taskId: leases[0].taskId, leaseToken: leases[0].leaseToken, message: "before the finish" } } });
  const credits = create(WorkerMessageSchema, { message: { case: "credits", value: { count: 20 } } });
  w.send({ case: "batch", value: { messages: [logStep, ...leases.map(finish), credits] } });

  let acks = 0;
  while (acks < 20) {
    const m = await w.nextOf(["finishAck", "batch", "finishRejected"]);
    assert.notEqual(m.case, "finishRejected");
    const all = m.case === "batch" ? m.value.messages.map((x) => x.message) : [m];
    for (const a of all) {
      if (a.case !== "finishAck") continue;
      acks++;
      assert.equal(a.value.status, TaskStatus.COMPLETED);
    }
  }
  for (const [i, id] of ids.entries()) {
    const task = await client.status(id);
    assert.equal(task.status, "completed");
    assert.equal(task.result, i);
  }
  const { rows } = await h.pool.query("select message from taskq.task_log where task_id = $1", [leases[0].taskId]);
  assert.ok(rows.some((r) => r.message === "before the finish"), "the log step in the batch was written");
  await w.close();
});

test("a worker that does not say it accepts batches gets one message per lease", async () => {
  const client = h.client();
  await client.dispatchBatch(Array.from({ length: 10 }, () => ({ type: "unbatched" })));
  const w = h.rawWorker();
  w.hello(["unbatched"], 10);
  for (let i = 0; i < 10; i++) await w.next("lease");
  await assert.rejects(w.next("batch", 300), /no batch within/);
  await w.close();
});

test("leases too large to share the budget come one per message", async () => {
  const client = h.client();
  const big = "x".repeat(200_000); // bounded at 6 × 200 KB, more than half the batch budget
  await client.dispatchBatch(Array.from({ length: 4 }, () => ({ type: "big", params: { big } })));
  await client.dispatchBatch(Array.from({ length: 4 }, () => ({ type: "big", params: {} })));
  const w = h.rawWorker();
  w.hello(["big"], 8, [], true);
  let got = 0;
  while (got < 8) {
    const m = await w.nextOf(["lease", "batch"]);
    const leases = leasesIn(m);
    const bigOnes = leases.filter((l) => l.params?.big === big).length;
    assert.ok(bigOnes <= 1, `${bigOnes} large leases in one message`);
    assert.ok(toBinary(ServerMessageSchema, create(ServerMessageSchema, { message: m })).length < BATCH_BYTES);
    got += leases.length;
  }
  await w.close();
});

test("malformed batches end the stream: nested, holding a hello, too many messages", async () => {
  const heartbeat = create(WorkerMessageSchema, { message: { case: "heartbeat", value: {} } });
  const cases: [string, WorkerMessage[], Code][] = [
    ["nested", [create(WorkerMessageSchema, { message: { case: "batch", value: { messages: [heartbeat] } } })], Code.InvalidArgument],
    ["hello", [create(WorkerMessageSchema, { message: { case: "hello", value: { taskTypes: [{ name: "x" }] } } })], Code.FailedPrecondition],
    ["too many", Array.from({ length: MAX_BATCH_MESSAGES + 1 }, () => heartbeat), Code.InvalidArgument],
  ];
  for (const [what, messages, code] of cases) {
    const w = h.rawWorker();
    w.hello(["malformed"], 0, [], true);
    await w.next("welcome");
    w.send({ case: "batch", value: { messages } });
    const err = await w.result();
    assert.ok(err instanceof ConnectError, what);
    assert.equal(err.code, code, `${what}: ${err.message}`);
    await w.close();
  }
});

/** A WorkerService that hands out `n` leases at once and records what the worker sends. */
async function fakeServer(opts: { acceptsBatches: boolean; leases: number }) {
  const received: WorkerMessage[] = [];
  const routes = (router: ConnectRouter) =>
    router.service(WorkerService, {
      async *connect(requests) {
        const out = new AsyncQueue<ServerMessage>();
        void (async () => {
          for await (const m of requests) {
            received.push(m);
            if (m.message.case === "hello") {
              out.push(create(ServerMessageSchema, { message: { case: "welcome", value: { sessionId: "s", acceptsBatches: opts.acceptsBatches } } }));
              const leases = Array.from({ length: opts.leases }, (_, i) =>
                create(ServerMessageSchema, {
                  message: { case: "lease", value: { taskId: String(i + 1), leaseToken: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`, type: "noop", attempt: 1, maxAttempts: 1 } },
                }),
              );
              if (m.message.value.acceptsBatches) out.push(create(ServerMessageSchema, { message: { case: "batch", value: { messages: leases } } }));
              else for (const l of leases) out.push(l);
            }
          }
          out.close();
        })();
        yield* out;
      },
    });
  const server = http2.createServer(connectNodeAdapter({ routes }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const finishesIn = (m: WorkerMessage["message"]): number =>
  m.case === "finish" ? 1 : m.case === "batch" ? m.value.messages.reduce((n, x) => n + finishesIn(x.message), 0) : 0;

for (const acceptsBatches of [true, false]) {
  test(`the SDK worker ${acceptsBatches ? "batches what it sends once the server accepts batches" : "sends one message at a time to a server that does not accept batches"}`, async () => {
    const server = await fakeServer({ acceptsBatches, leases: 50 });
    const worker = new Worker({ url: server.url, concurrency: 50 });
    worker.register("noop", () => null);
    await worker.start();
    try {
      await waitFor("50 finishes", () => server.received.reduce((n, m) => n + finishesIn(m.message), 0) === 50);
      const hello = server.received[0].message;
      assert.equal(hello.case === "hello" && hello.value.acceptsBatches, true);
      const batches = server.received.filter((m) => m.message.case === "batch");
      if (acceptsBatches) assert.ok(batches.some((b) => finishesIn(b.message) > 1), "finishes went out together");
      else assert.equal(batches.length, 0);
    } finally {
      await worker.stop({ graceMs: 200 });
      await server.close();
    }
  });
}
