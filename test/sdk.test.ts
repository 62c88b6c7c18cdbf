/**
 * The SDK worker's lifecycle: graceful stop, reconnect after the server comes back, no listener left
 * behind per reconnect; and server reflection.
 */
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import net, { type AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { AsyncQueue } from "@taskq/protocol";
import { connect } from "@taskq/sdk";
import { ServerReflection, type ServerReflectionRequest } from "@taskq/protocol/grpc";
import { create } from "@bufbuild/protobuf";
import { ServerReflectionRequestSchema } from "@taskq/protocol/grpc";
import {
  Code,
  DEFAULT_URL,
  RetryableError,
  TaskAbortedError,
  TaskClient,
  TaskFailedError,
  TaskqError,
  Worker,
  type TaskInfo,
  type WatchEvent,
} from "@taskq/sdk";
import { resumingWatch } from "../packages/sdk/src/internal/resuming-watch.js";
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

test("a handler cut off when stop()'s grace runs out gives its attempt back: the task runs again elsewhere, it does not fail", async () => {
  const replica = await h.replica();
  const client = h.client(replica);
  const stopping = h.worker({ concurrency: 1 }, replica);
  stopping.register("stubborn", async (ctx) => {
    await new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true }));
  });
  await stopping.start();
  const handle = await client.dispatch("stubborn", {}, { maxAttempts: 3 });
  await waitFor("the handler to start", () => stopping.running === 1);
  await stopping.stop({ graceMs: 50 });
  const after = await handle.status();
  assert.equal(after.status, "pending", after.error);
  assert.equal(after.error, "the worker is stopping");

  const next = h.worker({ concurrency: 1 }, replica);
  next.register("stubborn", (ctx) => ({ attempt: ctx.attempt }));
  await next.start();
  assert.deepEqual(await handle.result(), { attempt: 2 });
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
  // Count the watches the server is asked for: a retrying SDK would ask again.
  const engine = replica.engine;
  const watch = engine.watch.bind(engine);
  let watches = 0;
  engine.watch = (...args) => {
    watches++;
    return watch(...args);
  };
  try {
    await assert.rejects(client.handle("424242424").result(), (err: TaskqError) => err instanceof TaskqError && err.code === Code.NotFound);
    await assert.rejects(async () => {
      for await (const _ of client.watch("424242424")) void _;
    }, (err: TaskqError) => err.code === Code.NotFound);
    assert.equal(watches, 2, "one watch each, not retried");
  } finally {
    engine.watch = watch;
  }
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

/** A TCP proxy to a replica whose connections the test can cut, as a network failure or a restart would. */
async function cuttableProxy(port: number) {
  const pairs = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect(port, "127.0.0.1");
    for (const s of [client, upstream]) {
      pairs.add(s);
      s.on("error", () => {});
      s.on("close", () => pairs.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get accepted() {
      return accepted;
    },
    cut: () => {
      for (const s of pairs) s.resetAndDestroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of pairs) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Collects the process's warnings of one kind while `fn` runs (they are emitted on a later tick). */
async function warningsDuring(name: string, fn: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const onWarning = (w: Error) => void (w.name === name && seen.push(w.message));
  process.on("warning", onWarning);
  try {
    await fn();
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => process.nextTick(resolve));
  } finally {
    process.off("warning", onWarning);
  }
  return seen;
}

test("a worker that reconnects many times adds no abort listener per reconnect", async () => {
  const replica = h.replicas[0] ?? (await h.replica());
  const proxy = await cuttableProxy(replica.server.port);
  const events: string[] = [];
  const connected = () => events.filter((e) => e === "connected").length;
  const worker = h.worker({ url: proxy.url, concurrency: 1, onEvent: (e) => void events.push(e) }, replica);
  worker.register("reconnects.noop", () => "still working");
  const listeners = () => getEventListeners((worker as unknown as { stopSignal: AbortController }).stopSignal.signal, "abort").length;
  try {
    const warnings = await warningsDuring("MaxListenersExceededWarning", async () => {
      await worker.start();
      const base = listeners();
      for (let i = 1; i <= 15; i++) {
        proxy.cut();
        await waitFor(`reconnect ${i}`, () => connected() > i);
      }
      // (A reconnect's backoff may be under way: it holds one listener while it waits.)
      assert.ok(listeners() <= base + 1, `${listeners()} abort listeners on the worker's stop signal after 15 reconnects (${base} at start)`);
    });
    assert.deepEqual(warnings, []);
    assert.equal(await (await h.client(replica).dispatch("reconnects.noop")).result(), "still working");
  } finally {
    await worker.stop({ graceMs: 1_000 });
    await proxy.close();
  }
});

test("a watch that resumes many times leaves no abort listener on the caller's signal", async () => {
  const snapshot = (status: TaskInfo["status"]): WatchEvent => ({
    type: "snapshot",
    task: { id: "1", status, attempts: 1, worker: "", result: undefined, error: "", statusValues: {}, log: [] } as unknown as TaskInfo,
  });
  let opened = 0;
  // Each stream sends a snapshot and breaks, 20 times; the 21st says the task completed.
  const source = {
    async *open() {
      if (++opened > 20) return void (yield snapshot("completed"));
      yield snapshot("running");
      throw new TaskqError("connection reset", Code.Unavailable);
    },
  };
  const stop = new AbortController();
  const warnings = await warningsDuring("MaxListenersExceededWarning", async () => {
    const seen: string[] = [];
    for await (const e of resumingWatch(source, { signal: stop.signal, backoff: { initialMs: 1, maxMs: 1 } })) {
      if (e.type === "status") seen.push(e.status);
    }
    assert.deepEqual(seen, ["completed"]);
  });
  assert.equal(opened, 21);
  assert.equal(getEventListeners(stop.signal, "abort").length, 0);
  assert.deepEqual(warnings, []);
});

test("everything the SDK raises is a TaskqError with a code; the subclasses say more", async () => {
  const replica = h.replicas[0] ?? (await h.replica());
  const client = h.client(replica);
  const isTaskqError = (code: Code) => (err: unknown) => err instanceof TaskqError && err.code === code;
  let abortReason: unknown;
  const worker = h.worker({}, replica);
  worker.register("errors.fail", () => {
    throw new Error("boom");
  });
  worker.register("errors.wait", async (ctx) => {
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
    abortReason = ctx.signal.reason;
  });
  await worker.start();

  const failed = await client.dispatch("errors.fail", {}, { maxAttempts: 1 });
  await assert.rejects(failed.result(), (err) => err instanceof TaskFailedError && isTaskqError(Code.Unknown)(err) && err.status === "failed" && /boom/.test(err.message));
  const waiting = await client.dispatch("errors.wait");
  await waitFor("the handler to start", async () => (await waiting.status()).status === "running");
  await waiting.interrupt();
  await assert.rejects(waiting.result(), (err) => err instanceof TaskFailedError && isTaskqError(Code.Canceled)(err) && err.status === "canceled");
  assert.ok(abortReason instanceof TaskAbortedError && isTaskqError(Code.Canceled)(abortReason), String(abortReason));

  assert.throws(() => worker.register("errors.late", () => null), isTaskqError(Code.FailedPrecondition));
  await assert.rejects(worker.start(), isTaskqError(Code.FailedPrecondition));
  await assert.rejects(worker.run("errors.none"), isTaskqError(Code.NotFound));
  await worker.stop();
  assert.throws(() => new TaskClient({ url: "not a url" }), isTaskqError(Code.InvalidArgument));
  const retry = new RetryableError("again", { delayMs: 5, cause: new Error("upstream") });
  assert.ok(isTaskqError(Code.Unavailable)(retry) && retry.delayMs === 5 && (retry.cause as Error).message === "upstream");
  assert.equal(DEFAULT_URL, "http://127.0.0.1:50051");
});

test("a watch's status changes say when they happened: the final one when the task finished", async () => {
  const replica = h.replicas[0] ?? (await h.replica());
  const client = h.client(replica);
  // The handler finishes only once the watch has its snapshot, so the final status comes as a change.
  let seen!: () => void;
  const snapshotSeen = new Promise<void>((resolve) => (seen = resolve));
  const worker = h.worker({}, replica);
  worker.register("times.ok", async () => {
    await snapshotSeen;
    return "done";
  });
  await worker.start();
  const handle = await client.dispatch("times.ok");
  const changes: Extract<WatchEvent, { type: "status" }>[] = [];
  for await (const e of handle.watch()) {
    if (e.type === "snapshot") seen();
    if (e.type === "status") changes.push(e);
  }
  const task = await handle.status();
  assert.equal(changes.at(-1)?.status, "completed");
  for (const c of changes) assert.ok(c.time instanceof Date && !Number.isNaN(c.time.getTime()), `${c.status} at ${String(c.time)}`);
  assert.equal(changes.at(-1)!.time!.getTime(), task.finishedAt!.getTime());
  await worker.stop();
});

test("stop() waits only so long for a handler that ignores its abort: it returns, and the task goes back to the queue", async () => {
  const replica = h.replicas[0] ?? (await h.replica());
  const client = h.client(replica);
  const events: string[] = [];
  const deaf = h.worker({ concurrency: 1, onEvent: (e) => void events.push(e) }, replica);
  let release!: () => void;
  const never = new Promise<void>((resolve) => (release = resolve));
  deaf.register("stop.deaf", async () => {
    await never; // its signal aborts; it does not listen
    return "too late";
  });
  await deaf.start();
  const handle = await client.dispatch("stop.deaf", {}, { maxAttempts: 3 });
  await waitFor("the handler to start", () => deaf.running === 1);
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<string>((resolve) => (timer = setTimeout(() => resolve("still stopping after 10 s"), 10_000)));
  try {
    assert.equal(await Promise.race([deaf.stop({ graceMs: 50, abortWaitMs: 100 }).then(() => "stopped"), hung]), "stopped");
  } finally {
    clearTimeout(timer);
  }
  assert.ok(events.includes("handlers did not stop"), events.join(", "));
  assert.equal(deaf.running, 1, "the handler is left running");
  const back = await waitFor("the task to go back to the queue", async () => {
    const task = await handle.status();
    return task.status === "pending" ? task : null;
  });
  assert.equal(back.attempts, 1, "the attempt counts: the handler ran");
  release(); // its result goes nowhere: the stream has ended

  const next = h.worker({ concurrency: 1 }, replica);
  next.register("stop.deaf", (ctx) => ({ attempt: ctx.attempt }));
  await next.start();
  assert.deepEqual(await handle.result(), { attempt: 2 });
  await next.stop();
});
