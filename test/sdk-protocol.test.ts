/**
 * How the SDK worker keeps the worker protocol at its edges: start() fails when the server refuses the
 * worker for good (a bad token, a bad hello) and keeps trying while the server is merely not there; the
 * reconnect backoff is jittered within its bounds; a lease that arrives after stop() began is declined
 * (back to the queue unrun, its attempt not counted) rather than run; the server's rejection codes
 * and FinishAck.error reach the worker's events; and what a handler throws becomes a finish the server
 * records as sent (a retry delay within range, an error text that is not empty).
 */
import assert from "node:assert/strict";
import net, { type AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createRouterTransport, type Transport } from "@connectrpc/connect";
import { AsyncQueue, LIMITS, ServerMessageSchema, TaskStatus, WorkerService, type ServerMessage, type WorkerMessage } from "@taskq/protocol";
import { Code, RetryableError, TaskFailedError, TaskqError, Worker, connect, type Connection, type JsonObject } from "@taskq/sdk";
import { tokenDigest, type AuthToken } from "../packages/server/src/rpc/auth.js";
import { WorkerRefusedError } from "../packages/sdk/src/errors.js";
import { Backoff } from "../packages/sdk/src/internal/backoff.js";
import type { Replica } from "../packages/server/src/app.js";
import { Harness, openConnections, waitFor } from "./helpers.js";

const TOKENS = { client: "client-token-0123456789", worker: "worker-token-0123456789" };
const authTokens: AuthToken[] = Object.entries(TOKENS).map(([role, token]) => ({ name: role, role: role as AuthToken["role"], sha256: tokenDigest(token) }));

let h: Harness;
/** A replica without auth, and one that wants a token. */
let plain: Replica;
let authed: Replica;
before(async () => {
  h = await Harness.create();
  plain = await h.replica();
  authed = await h.replica({ authTokens });
});
after(() => h.close());

type Event = { event: string; detail?: Record<string, unknown> };

/** A worker on `connection` whose events are kept; the test stops it (the harness does not know it). */
function recordingWorker(connection: Connection, events: Event[]): Worker {
  return new Worker({ connection, reconnect: { initialMs: 1, maxMs: 1 }, onEvent: (event, detail) => void events.push({ event, detail }) });
}

/** A connection whose transport counts the worker streams opened on it. */
function countingConnection(url: string, token?: string): Connection & { readonly streams: number } {
  const inner = connect({ url, token });
  let streams = 0;
  const transport: Transport = {
    unary: (...args) => inner.transport.unary(...args),
    stream: (...args) => {
      streams++;
      return inner.transport.stream(...args);
    },
  };
  return {
    transport,
    close: () => inner.close(),
    get streams() {
      return streams;
    },
  };
}

const isRefusal = (code: Code, message: RegExp) => (err: unknown) =>
  err instanceof WorkerRefusedError && err instanceof TaskqError && err.code === code && message.test(err.message);

/** start(), failing with a clear message instead of hanging when it neither resolves nor rejects in time (a worker that retries forever). */
function started(worker: Worker, ms = 10_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const stillTrying = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`start() still pending after ${ms} ms`)), ms)));
  return Promise.race([worker.start(), stillTrying]).finally(() => clearTimeout(timer));
}

describe("start() when the server refuses the worker", () => {
  test("a wrong token: start() rejects UNAUTHENTICATED, once, and the worker has stopped", async () => {
    const connection = countingConnection(authed.server.url, "not-a-known-token-at-all");
    const events: Event[] = [];
    const worker = recordingWorker(connection, events);
    worker.register("refused.any", () => null);
    try {
      await assert.rejects(started(worker), isRefusal(Code.Unauthenticated, /token/i));
      assert.equal(connection.streams, 1, "one stream, not retried");
      assert.deepEqual(events.map((e) => e.event), ["refused"]);
      assert.equal(events[0].detail?.code, "Unauthenticated");
      // No reconnect loop is left behind: with a 1-ms backoff it would have opened many streams by now.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(connection.streams, 1);
      await assert.rejects(worker.start(), (err) => err instanceof TaskqError && err.code === Code.FailedPrecondition && /stopped/.test(err.message));
      await worker.stop();
    } finally {
      connection.close();
    }
  });

  test("a token of the wrong role: start() rejects PERMISSION_DENIED; its own connection is closed", async () => {
    const worker = h.worker({ token: TOKENS.client }, authed);
    worker.register("refused.any", () => null);
    await assert.rejects(started(worker), isRefusal(Code.PermissionDenied, /.+/));
    await waitFor("the worker's connection to close", () => openConnections(authed.server.port).length === 0);
  });

  test("a bad hello: start() rejects INVALID_ARGUMENT naming the field (a cron expression, a type name)", async () => {
    const badCron = h.worker({}, plain);
    badCron.register("refused.cron", () => null, { schedule: "every minute" });
    await assert.rejects(started(badCron), isRefusal(Code.InvalidArgument, /schedule/));
    const badName = h.worker({}, plain);
    badName.register("has a space", () => null);
    await assert.rejects(started(badName), isRefusal(Code.InvalidArgument, /name/));
  });

  test("a server that is not up yet is waited for: start() resolves once it is", async () => {
    const port = await freePort();
    const events: Event[] = [];
    const connection = countingConnection(`http://127.0.0.1:${port}`);
    const worker = recordingWorker(connection, events);
    worker.register("later.echo", (ctx) => ctx.params.n ?? null);
    try {
      const started = worker.start();
      await waitFor("a few refused connection attempts", () => connection.streams >= 3);
      const replica = await h.replica({ port });
      await started;
      assert.equal(await (await h.client(replica).dispatch("later.echo", { n: 7 })).result(), 7);
      assert.ok(!events.some((e) => e.event === "refused"), JSON.stringify(events));
    } finally {
      await worker.stop({ graceMs: 1_000 });
      connection.close();
    }
  });
});

/** A TCP port nothing listens on (it was free a moment ago). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("reconnect backoff", () => {
  test("each pause lies in the upper half of a ceiling that doubles up to the cap, and goes back to the first on reset", () => {
    const low = new Backoff({ initialMs: 100, maxMs: 1_000 }, () => 0);
    assert.deepEqual(Array.from({ length: 6 }, () => low.next()), [50, 100, 200, 400, 500, 500]);
    const high = new Backoff({ initialMs: 100, maxMs: 1_000 }, () => 0.999_999);
    const highs = Array.from({ length: 6 }, () => high.next());
    for (const [i, ceiling] of [100, 200, 400, 800, 1_000, 1_000].entries()) {
      assert.ok(highs[i] <= ceiling && highs[i] > ceiling * 0.999, `${highs[i]} under ${ceiling}`);
    }
    high.reset();
    assert.ok(high.next() <= 100);
  });

  test("workers drawing their pauses at random do not reconnect in lockstep", () => {
    const pauses = Array.from({ length: 50 }, () => new Backoff({ initialMs: 100, maxMs: 5_000 }).next());
    for (const p of pauses) assert.ok(p >= 50 && p <= 100, String(p));
    assert.ok(new Set(pauses).size > 40, `${new Set(pauses).size} distinct pauses of 50`);
  });
});

describe("leases the worker will not run", () => {
  test("a lease that arrives after stop() began is declined: the task is PENDING again with no attempt counted", async () => {
    const replica = plain;
    const client = h.client(replica);
    const events: Event[] = [];
    // Two credits: the blocking task takes one, and the other stays with the server once stop() began.
    const stopping = h.worker({ concurrency: 2, onEvent: (event, detail) => void events.push({ event, detail }) }, replica);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const ran: number[] = [];
    stopping.register("decline.block", async () => {
      await gate;
      return "done";
    });
    stopping.register("decline.late", (ctx) => void ran.push(ctx.attempt));
    await stopping.start();
    const blocking = await client.dispatch("decline.block");
    await waitFor("the blocking handler to start", () => stopping.running === 1);

    const stopped = stopping.stop({ graceMs: 30_000 });
    const late = await client.dispatch("decline.late");
    // The stopping worker holds a credit it cannot withdraw, so the server leases the task to it.
    await waitFor("the late lease to be declined", () => events.some((e) => e.event === "lease declined" && e.detail?.task === late.id) || ran.length > 0);
    assert.deepEqual(ran, [], "the stopping worker never ran it");
    release();
    await stopped;

    assert.equal((await blocking.status()).status, "completed");
    const declined = await late.status();
    assert.equal(declined.status, "pending");
    assert.equal(declined.attempts, 0);
    assert.ok(!events.some((e) => e.event === "finish rejected"), JSON.stringify(events));

    const next = h.worker({ concurrency: 1 }, replica);
    next.register("decline.late", (ctx) => ctx.attempt);
    await next.start();
    assert.equal(await late.result(), 1, "its first attempt runs on the next worker");
  });

  test("a lease that arrives after the session's deadline is declined, and the decline is written before the stream ends", async () => {
    // A server of the test's own (an in-memory transport), to say exactly when the deadline falls: its
    // welcome promises nothing; then, once the hello is 20 ms old, one batch says the hello's validity
    // was 1 ms and hands over a lease, which therefore arrives past the deadline.
    const fromWorker: WorkerMessage[] = [];
    const leaseToken = "8b0c5a6e-1f0e-4c8e-9a39-3d2c8f1b7e11";
    const transport = createRouterTransport((router) =>
      router.service(WorkerService, {
        async *connect(requests) {
          const incoming = requests[Symbol.asyncIterator]();
          await incoming.next();
          yield create(ServerMessageSchema, { message: { case: "welcome", value: { sessionId: "fake", heartbeatInterval: durationFromMs(60_000), acceptsBatches: true } } });
          await new Promise((resolve) => setTimeout(resolve, 20));
          const messages = [
            { message: { case: "heartbeatAck" as const, value: { seq: 0n, leaseValidity: durationFromMs(1) } } },
            { message: { case: "lease" as const, value: { taskId: "7", leaseToken, type: "late.never", attempt: 1, maxAttempts: 3 } } },
          ];
          yield create(ServerMessageSchema, { message: { case: "batch", value: { messages } } });
          try {
            for (let r = await incoming.next(); !r.done; r = await incoming.next()) fromWorker.push(r.value);
          } catch {
            // The worker ends the stream itself once its leases lapsed.
          }
        },
      }),
    );
    const events: Event[] = [];
    const ran: string[] = [];
    const worker = new Worker({
      connection: { transport, close: () => {} },
      concurrency: 1,
      reconnect: { initialMs: 60_000, maxMs: 60_000 },
      onEvent: (event, detail) => void events.push({ event, detail }),
    });
    worker.register("late.never", (ctx) => void ran.push(ctx.id));
    await worker.start();
    try {
      await waitFor("the worker to end its stream", () => events.some((e) => e.event === "disconnected"));
      const sent = fromWorker.flatMap((m) => (m.message.case === "batch" ? m.message.value.messages : [m]));
      const finishes = sent.flatMap((m) => (m.message.case === "finish" ? [m.message.value] : []));
      assert.deepEqual(
        finishes.map((f) => [f.taskId, f.leaseToken, f.outcome.case]),
        [["7", leaseToken, "decline"]],
      );
      assert.deepEqual(ran, []);
      assert.equal(events.find((e) => e.event === "disconnected")?.detail?.code, "Aborted");
      assert.match(String(events.find((e) => e.event === "lease declined")?.detail?.reason), /lapsed/);
    } finally {
      await worker.stop({ graceMs: 1_000 });
    }
  });
  test("stop() half-closes only once the server has answered every finish, so a lease that comes before the answer is declined", async () => {
    // A server of the test's own: it leases A; when A's finish comes, it leases B and only then answers
    // A's finish. A worker that half-closed as soon as A's finish was queued could not decline B.
    const fromWorker: WorkerMessage["message"][] = [];
    const token = (n: number) => `8b0c5a6e-1f0e-4c8e-9a39-3d2c8f1b7e1${n}`;
    const lease = (taskId: string, leaseToken: string) =>
      create(ServerMessageSchema, { message: { case: "lease", value: { taskId, leaseToken, type: "drain.task", attempt: 1, maxAttempts: 3 } } });
    const ack = (taskId: string, leaseToken: string, status: TaskStatus) =>
      create(ServerMessageSchema, { message: { case: "finishAck", value: { taskId, leaseToken, status } } });
    const transport = createRouterTransport((router) =>
      router.service(WorkerService, {
        async *connect(requests) {
          const replies = new AsyncQueue<ServerMessage>();
          const handle = (m: WorkerMessage["message"]) => {
            fromWorker.push(m);
            if (m.case === "hello") {
              replies.push(create(ServerMessageSchema, { message: { case: "welcome", value: { sessionId: "fake", heartbeatInterval: durationFromMs(60_000), acceptsBatches: true } } }));
              replies.push(lease("1", token(1)));
            } else if (m.case === "finish" && m.value.taskId === "1") {
              replies.push(lease("2", token(2)));
              replies.push(ack("1", token(1), TaskStatus.COMPLETED));
            } else if (m.case === "finish") {
              replies.push(ack(m.value.taskId, m.value.leaseToken, TaskStatus.PENDING));
            }
          };
          void (async () => {
            for await (const r of requests) for (const m of r.message.case === "batch" ? r.message.value.messages : [r]) handle(m.message);
            replies.close();
          })();
          yield* replies;
        },
      }),
    );
    const ran: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const worker = new Worker({ connection: { transport, close: () => {} }, concurrency: 2 });
    worker.register("drain.task", async (ctx) => {
      ran.push(ctx.id);
      await gate;
      return "done";
    });
    await worker.start();
    await waitFor("task 1 to run", () => worker.running === 1);
    const stopped = worker.stop({ graceMs: 10_000 });
    release();
    await stopped;
    assert.deepEqual(ran, ["1"]);
    const finishes = fromWorker.flatMap((m) => (m.case === "finish" ? [[m.value.taskId, m.value.outcome.case]] : []));
    assert.deepEqual(finishes, [
      ["1", "success"],
      ["2", "decline"],
    ]);
  });
});

describe("what the server says about a worker's messages", () => {
  test("rejected log steps and status values carry their code", async () => {
    const replica = plain;
    const events: Event[] = [];
    const worker = h.worker({ onEvent: (event, detail) => void events.push({ event, detail }) }, replica);
    worker.register("codes.updates", (ctx) => {
      ctx.log("x".repeat(LIMITS.logMessageLength + 1));
      ctx.setStatus("", 1);
      return "done";
    });
    await worker.start();
    const handle = await h.client(replica).dispatch("codes.updates");
    assert.equal(await handle.result(), "done");
    const rejected = await waitFor("both rejections", () => {
      const r = events.filter((e) => e.event === "update rejected");
      return r.length === 2 ? r : null;
    });
    assert.deepEqual(
      rejected.map((e) => [e.detail?.task, e.detail?.code]),
      [
        [handle.id, "limit"],
        [handle.id, "invalid"],
      ],
    );
  });

  test("a result the server could not record is reported from FinishAck.error, and the retry policy applied", async () => {
    const replica = plain;
    const events: Event[] = [];
    const worker = h.worker({ onEvent: (event, detail) => void events.push({ event, detail }) }, replica);
    // Postgres cannot store a NUL character: the first attempt's result is recorded as a failure.
    worker.register("codes.nul", (ctx) => (ctx.attempt === 1 ? "a\u0000b" : "clean"));
    await worker.start();
    const handle = await h.client(replica).dispatch("codes.nul", {}, { maxAttempts: 2, retryDelayMs: 0, backoff: "fixed" });
    assert.equal(await handle.result(), "clean");
    const failed = events.filter((e) => e.event === "finish recorded as failed");
    assert.equal(failed.length, 1, JSON.stringify(events));
    assert.equal(failed[0].detail?.task, handle.id);
    assert.equal(failed[0].detail?.status, "pending", "to be retried");
    assert.match(String(failed[0].detail?.error), /NUL/);
  });
});

describe("what a handler's throw sends", () => {
  test("a RetryableError's delay out of the protocol's range is held to 0 or 7 days, not sent for the server to refuse", async () => {
    const replica = plain;
    const events: Event[] = [];
    const worker = h.worker({ onEvent: (event, detail) => void events.push({ event, detail }) }, replica);
    worker.register("delay.range", (ctx) => {
      // The task's own retry delay is an hour: only a delay held to 0 lets attempt 2 run now.
      if (ctx.attempt === 1) throw new RetryableError("a moment already past", { delayMs: -60_000 });
      throw new RetryableError("a Retry-After far ahead", { delayMs: 30 * 24 * 3_600_000 });
    });
    worker.register("delay.nan", () => {
      throw new RetryableError("no delay after all", { delayMs: Number.NaN });
    });
    await worker.start();
    const client = h.client(replica);
    const hourly = { maxAttempts: 3, retryDelayMs: 3_600_000, backoff: "fixed" as const };
    const before = Date.now();
    const ranged = await client.dispatch("delay.range", {}, hourly);
    const nan = await client.dispatch("delay.nan", {}, hourly);
    /** The task once it waits for its next attempt; fails at once when the server recorded a finish as a failure instead. */
    const retried = (id: string, attempts: number) =>
      waitFor(`task ${id} to wait for attempt ${attempts + 1}`, async () => {
        const refused = events.find((e) => e.event === "finish recorded as failed");
        if (refused) assert.fail(`the server refused a finish: ${JSON.stringify(refused.detail)}`);
        const task = await client.handle(id).status();
        return task.status === "pending" && task.attempts === attempts ? task : null;
      });
    const ranges = await retried(ranged.id, 2);
    const nans = await retried(nan.id, 1);
    const after = Date.now();
    const week = 7 * 24 * 3_600_000;
    const due = (task: { nextTryAt: Date | null }) => task.nextTryAt?.getTime() ?? Number.NaN;
    assert.equal(ranges.error, "a Retry-After far ahead");
    assert.ok(due(ranges) >= before + week - 1_000 && due(ranges) <= after + week + 1_000, `due in 7 days: ${due(ranges) - after} ms from now`);
    assert.ok(due(nans) >= before + 3_600_000 - 1_000 && due(nans) <= after + 3_600_000 + 1_000, "NaN: the task's retry delay");
  });

  test("the error text is never empty: an Error without a message sends its name; other thrown values are described", async () => {
    const replica = plain;
    const worker = h.worker({}, replica);
    class QuotaError extends Error {}
    const throws: Record<string, () => unknown> = {
      empty: () => new Error(""),
      typed: () => new TypeError(),
      subclass: () => new QuotaError(),
      named: () => Object.assign(new Error(), { name: "ConfigError" }),
      string: () => "plain words",
      emptyString: () => "",
      object: () => ({ code: 42 }),
      undefined: () => undefined,
      number: () => 7,
    };
    worker.register("thrown.value", (ctx) => {
      throw throws[ctx.params.kind as string]();
    });
    // Attempt 1 leaves an error behind; the server would keep it if attempt 2's were empty.
    worker.register("thrown.after", (ctx) => {
      throw ctx.attempt === 1 ? new RetryableError("attempt 1's error", { delayMs: 0 }) : new Error("");
    });
    await worker.start();
    const client = h.client(replica);
    const errorOf = async (type: string, params: JsonObject, maxAttempts: number) => {
      const handle = await client.dispatch(type, params, { maxAttempts });
      await assert.rejects(handle.result(), TaskFailedError);
      return (await handle.status()).error;
    };
    const errors = Object.fromEntries(await Promise.all(Object.keys(throws).map(async (kind) => [kind, await errorOf("thrown.value", { kind }, 1)])));
    assert.deepEqual(errors, {
      empty: "Error",
      typed: "TypeError",
      subclass: "QuotaError",
      named: "ConfigError",
      string: "plain words",
      emptyString: "the handler threw an empty string",
      object: 'the handler threw a non-Error value: {"code":42}',
      undefined: "the handler threw a non-Error value: undefined",
      number: "the handler threw a non-Error value: 7",
    });
    assert.equal(await errorOf("thrown.after", {}, 2), "Error", "not attempt 1's error");
  });
});
