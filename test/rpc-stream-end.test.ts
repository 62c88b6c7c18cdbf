/**
 * A worker stream that ends abruptly (the worker killed, its connection reset, the server stopping) is
 * normal operation: the replica logs it below error level and without a stack. Level 50 is for faults
 * an operator must act on. The replica's log is captured from pino as JSON lines.
 */
import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import http2 from "node:http2";
import type net from "node:net";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { startReplica, type Replica } from "../packages/server/src/app.js";
import { loadConfig, withBuiltinQueues } from "../packages/server/src/config.js";
import { peerGone, toConnectError } from "../packages/server/src/rpc/errors.js";
import { WorkerMessageSchema } from "@taskq/protocol";
import { Harness, waitFor } from "./helpers.js";

interface LogLine {
  level: number;
  msg: string;
  err?: { stack?: string };
  [key: string]: unknown;
}

/** A pino logger at trace level whose lines land in `lines`. */
function capturingLogger() {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { log: pino({ level: "trace" }, sink), lines };
}

const faults = (lines: LogLine[]) => lines.filter((l) => l.level >= 50).map((l) => `${l.msg}: ${l.err?.stack ?? JSON.stringify(l)}`);

/** Server-side sockets by the port they were accepted on (every server in this process publishes them). */
const accepted = new Map<net.Socket, number>();
diagnostics.subscribe("net.server.socket", (message) => {
  const { socket } = message as { socket: net.Socket };
  if (socket.localPort === undefined) return;
  accepted.set(socket, socket.localPort);
  socket.once("close", () => accepted.delete(socket));
});

let h: Harness;
before(async () => (h = await Harness.create()));
after(() => h.close());

async function replica(log: pino.Logger): Promise<Replica> {
  // (The workers here hold no leases, so a session whose stream ended abruptly closes at once.)
  const config = { ...loadConfig({}), host: "127.0.0.1", port: 0, pollIntervalMs: 200, builtinSchedules: false };
  config.queues = withBuiltinQueues({});
  const r = await startReplica({ ...config, databaseUrl: h.databaseUrl }, log);
  h.replicas.push(r);
  return r;
}

/** One gRPC message frame of a WorkerMessage. */
function frame(message: MessageInitShape<typeof WorkerMessageSchema>["message"]): Buffer {
  const body = toBinary(WorkerMessageSchema, create(WorkerMessageSchema, { message }));
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

test("a worker whose connection is reset while its session opens is not logged as a fault", async () => {
  const { log, lines } = capturingLogger();
  const r = await replica(log);
  const conn = http2.connect(r.server.url);
  conn.on("error", () => {});
  // Hold the session's row insert, so the stream is gone before the session is open.
  const locker = await h.pool.connect();
  try {
    await locker.query("begin");
    await locker.query("lock table taskq.worker_sessions in share mode");
    const stream = conn.request({ ":method": "POST", ":path": "/taskq.v1.WorkerService/Connect", "content-type": "application/grpc", te: "trailers" });
    stream.on("error", () => {});
    stream.on("data", () => {});
    stream.write(Buffer.concat([frame({ case: "hello", value: { workerName: "doomed", taskTypes: [{ name: "stream-end.x" }] } }), frame({ case: "credits", value: { count: 3 } })]));
    await waitFor("the session's insert to wait for the lock", async () => {
      const { rows } = await h.pool.query(
        "select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%insert into taskq.worker_sessions%'",
      );
      return rows.length > 0;
    });
    // The worker's process dies: its connection is reset. Wait until the server's side has closed.
    const local = conn.socket.localPort;
    conn.socket.resetAndDestroy();
    await waitFor("the server to close the connection", () => ![...accepted.keys()].some((s) => s.remotePort === local));
    await locker.query("commit");
  } finally {
    locker.release();
  }
  // The stream's end is handled once the session has opened: the session ends (or, as a fault, an error is logged).
  const note = await waitFor("the stream's end to be handled", () =>
    lines.find((l) => l.level >= 50 || l.msg === "worker session ended" || l.msg.startsWith("the stream ended abruptly")),
  );
  conn.destroy();
  assert.deepEqual(faults(lines), []);
  assert.ok(note.level <= 30 && note.err === undefined, "below warn, without a stack");
});

test("workers whose connections are reset, or whose server closes its connections, are not logged as faults", async () => {
  const { log, lines } = capturingLogger();
  const r = await replica(log);
  const own = r.engine.sessionCount; // the replica's own maintenance worker
  const streams = async (n: number) => {
    const conns: http2.ClientHttp2Session[] = [];
    const connected = () => lines.filter((l) => l.msg === "worker connected").length;
    const before = connected();
    for (let i = 0; i < n; i++) {
      const conn = http2.connect(r.server.url);
      conn.on("error", () => {});
      const stream = conn.request({ ":method": "POST", ":path": "/taskq.v1.WorkerService/Connect", "content-type": "application/grpc", te: "trailers" });
      stream.on("error", () => {});
      stream.on("data", () => {});
      stream.write(frame({ case: "hello", value: { workerName: `w${i}`, taskTypes: [{ name: "stream-end.y" }] } }));
      // Messages still unread on the server when the connection goes (heartbeats and credits).
      stream.write(Buffer.concat(Array.from({ length: 200 }, (_, k) => frame({ case: "heartbeat", value: { seq: BigInt(k + 1) } }))));
      conns.push(conn);
    }
    await waitFor("the workers to connect", () => connected() >= before + n);
    return conns;
  };
  for (const conn of await streams(5)) conn.socket.resetAndDestroy();
  await waitFor("their sessions to close", () => r.engine.sessionCount === own);
  const last = await streams(3);
  // The server closes its connections, as it does when the replica stops (the engine's own shutdown is
  // left out: this is about the streams), and returns once every connection has closed.
  await r.server.close();
  await waitFor("their sessions to close", () => r.engine.sessionCount === own);
  for (const conn of last) conn.destroy();
  const seen = [...lines];
  h.replicas.splice(h.replicas.indexOf(r), 1);
  await r.stop({ graceMs: 0 });
  assert.deepEqual(faults(seen), []);
});

test("toConnectError: a stream whose other end went away is CANCELED, logged at debug without a stack", () => {
  const { log, lines } = capturingLogger();
  const premature = Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" });
  const goaway = new ConnectError("Session closed with error code 8", Code.Internal, undefined, undefined, Object.assign(new Error("Session closed with error code 8"), { code: "ERR_HTTP2_SESSION_ERROR" }));
  const wrapped = new Error("reading the request failed", { cause: Object.assign(new Error("stream reset"), { code: "ERR_HTTP2_STREAM_ERROR" }) });
  for (const err of [premature, wrapped]) {
    assert.ok(peerGone(err));
    const mapped = toConnectError(err, log);
    assert.equal(mapped.code, Code.Canceled);
  }
  assert.ok(peerGone(goaway.cause), "a cause naming a GOAWAY counts");
  assert.deepEqual(faults(lines), []);
  assert.ok(lines.every((l) => l.level === 20 && l.err === undefined));
  // Anything else is still a fault, logged with its stack and never sent.
  const bug = toConnectError(new TypeError("x is not a function"), log);
  assert.equal(bug.code, Code.Internal);
  assert.equal(bug.rawMessage, "internal error");
  assert.equal(faults(lines).length, 1);
});
