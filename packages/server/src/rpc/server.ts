/**
 * The listening server: one port (cleartext, or TLS when configured) serving gRPC, gRPC-Web and Connect
 * for TaskQueue, WorkerService, grpc.health.v1 and grpc.reflection.v1, behind bearer-token auth when
 * tokens are configured, plus plain GET pages such as /metrics and the dashboard's files.
 *
 * The port speaks HTTP/2 and HTTP/1.1 both: in cleartext, the first bytes of a connection decide (the
 * HTTP/2 preface starts "PRI "); over TLS, ALPN does. gRPC and bidi streams need HTTP/2; Connect unary
 * and server-streaming calls and the GET pages work over either. close() ends every open connection,
 * so streams do not keep a stopped server (or a test run) alive.
 */
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import type { TlsConfig } from "../config.js";
import type { Engine } from "../engine/index.js";
import { Health, file_grpc_health_v1_health } from "@taskq/protocol/grpc";
import { ServerReflection } from "@taskq/protocol/grpc";
import { TaskQueue, file_taskq_v1_task_queue } from "@taskq/protocol";
import { WorkerService, file_taskq_v1_worker } from "@taskq/protocol";
import { authInterceptor, authenticate, type AuthToken } from "./auth.js";
import { CONNECTION } from "./connection.js";
import { healthService } from "./health.js";
import { reflectionService } from "./reflection.js";
import { taskQueueService } from "./task-queue.js";
import { workerService } from "./worker-service.js";

/** Largest message accepted: params and results are capped at 1 MiB, plus room for the rest. */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface ServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Resolves true while the database answers. */
  probe(): Promise<boolean>;
  /** Empty: every call is allowed. */
  authTokens: AuthToken[];
  tls: TlsConfig | null;
  /** Plain GET pages by path, such as /metrics; any valid token may read them when auth is on. */
  pages?: Record<string, () => Promise<{ contentType: string; body: string }>>;
  /** Files served to anyone by GET, by path (the dashboard's). */
  publicFiles?: Record<string, { contentType: string; body: Buffer }>;
}

export interface RunningServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

function routes(engine: Engine, log: Logger, opts: Pick<ServerOptions, "probe">) {
  const served = [TaskQueue.typeName, WorkerService.typeName, Health.typeName, ServerReflection.typeName];
  return (router: ConnectRouter) => {
    router.service(TaskQueue, taskQueueService(engine, log));
    router.service(WorkerService, workerService(engine, log));
    router.service(Health, healthService([TaskQueue.typeName, WorkerService.typeName], opts.probe, engine.drainSignal));
    router.service(
      ServerReflection,
      reflectionService([file_taskq_v1_task_queue, file_taskq_v1_worker, file_grpc_health_v1_health], served),
    );
  };
}

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

export async function listen(engine: Engine, log: Logger, opts: ServerOptions): Promise<RunningServer> {
  const rpc = connectNodeAdapter({
    routes: routes(engine, log, opts),
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    // Compressed requests are accepted, but responses go uncompressed: gzip cost the server about 3 % of
    // its CPU under load (worker streams carry batches larger than the 1 KiB default threshold) and the
    // workers as much again to inflate them, to save bandwidth on the local networks taskq runs on.
    compressMinBytes: Number.MAX_SAFE_INTEGER,
    interceptors: opts.authTokens.length > 0 ? [authInterceptor(opts.authTokens)] : [],
    // Calls on one HTTP/2 session (or HTTP/1.1 socket) share a connection identity, for per-connection limits.
    contextValues: (req) => createContextValues().set(CONNECTION, "stream" in req ? req.stream.session ?? null : req.socket),
  });
  const pages = opts.pages ?? {};
  const files = opts.publicFiles ?? {};
  const handler: Handler = (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    const file = req.method === "GET" ? files[path] : undefined;
    if (file) {
      res.writeHead(200, { "content-type": file.contentType, "cache-control": "no-cache", "x-content-type-options": "nosniff" });
      return void res.end(file.body);
    }
    const page = req.method === "GET" ? pages[path] : undefined;
    if (!page) {
      if (isGrpc(req)) specEncodeGrpcMessage(res);
      return void rpc(req, res);
    }
    const reply = (status: number, contentType: string, body: string) => {
      res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
      res.end(body);
    };
    if (opts.authTokens.length > 0 && !authenticate(opts.authTokens, new Headers(req.headers as Record<string, string>))) {
      return void reply(401, "text/plain; charset=utf-8", "a valid bearer token is required\n");
    }
    page().then(
      (p) => reply(200, p.contentType, p.body),
      (err: unknown) => {
        log.error({ err, path }, "serving a page failed");
        reply(500, "text/plain; charset=utf-8", "internal error\n");
      },
    );
  };

  const sessions = new Set<http2.ServerHttp2Session>();
  const track = (server: http2.Http2Server | http2.Http2SecureServer) =>
    server.on("session", (s) => {
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
    });
  let listener: net.Server;
  let h1: http.Server | null = null;
  if (opts.tls) {
    listener = track(
      http2.createSecureServer(
        {
          cert: opts.tls.cert,
          key: opts.tls.key,
          ca: opts.tls.clientCa ?? undefined,
          requestCert: opts.tls.clientCa !== null,
          rejectUnauthorized: opts.tls.clientCa !== null,
          allowHTTP1: true,
        },
        handler,
      ),
    );
  } else {
    const h2 = track(http2.createServer(handler));
    h1 = http.createServer(handler);
    listener = net.createServer((socket) => sniff(socket, (isHttp2) => (isHttp2 ? h2 : h1!).emit("connection", socket)));
  }
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(opts.port, opts.host, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const port = (listener.address() as AddressInfo).port;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    port,
    url: `${opts.tls ? "https" : "http"}://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        listener.close(() => resolve());
        h1?.closeAllConnections();
        for (const s of sessions) s.close();
        setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, 1_000).unref();
      }),
  };
}

/** gRPC proper (application/grpc, application/grpc+proto, …), not gRPC-Web nor Connect. */
const isGrpc = (req: http.IncomingMessage | http2.Http2ServerRequest) => /^application\/grpc(\+|;|$)/i.test(req.headers["content-type"] ?? "");

/**
 * Sends grpc-message percent-encoded as the gRPC spec says: only bytes outside 0x20–0x7E, and "%",
 * are escaped. connect-es escapes with encodeURIComponent (":" as %3A, "," as %2C, …), which grpc-go
 * and grpc-java decode but @grpc/grpc-js does not: it decodes with decodeURI, which leaves the escapes
 * of reserved characters as they are, so its users read "type%3A required". connect-es clients
 * (decodeURIComponent) read either form. The message arrives in the trailers, or in the headers of a
 * trailers-only response; gRPC-Web carries its trailers in the body and is left as connect-es wrote it.
 */
function specEncodeGrpcMessage(res: http.ServerResponse | http2.Http2ServerResponse): void {
  const fix = (headers: unknown) => {
    const h = headers as Record<string, unknown> | undefined;
    if (h && typeof h === "object" && typeof h["grpc-message"] === "string") h["grpc-message"] = grpcMessageEncode(h["grpc-message"]);
  };
  const target = res as unknown as { writeHead(...args: unknown[]): unknown; addTrailers(headers: unknown): void };
  const writeHead = target.writeHead;
  const addTrailers = target.addTrailers;
  target.writeHead = function (this: unknown, ...args: unknown[]) {
    fix(args[args.length - 1]);
    return writeHead.apply(this, args);
  };
  target.addTrailers = function (this: unknown, headers: unknown) {
    fix(headers);
    return addTrailers.call(this, headers);
  };
}

/** A grpc-message value as connect-es encodes it (encodeURIComponent), re-encoded by the spec's rule. */
function grpcMessageEncode(uriComponent: string): string {
  let text: string;
  try {
    text = decodeURIComponent(uriComponent);
  } catch {
    return uriComponent; // not what connect-es writes: leave it
  }
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const HTTP2_PREFACE = Buffer.from("PRI ");

/**
 * Reads a connection's first bytes, puts them back, and says whether it opens with the HTTP/2 preface.
 * (The HTTP/2 server reads the socket natively, so the peek goes through read()/unshift(), which both
 * servers then see; a "data" listener would switch the socket to flowing mode and lose bytes.)
 */
function sniff(socket: net.Socket, route: (isHttp2: boolean) => void): void {
  const onReadable = () => {
    const head: Buffer | null = socket.read(HTTP2_PREFACE.length) ?? socket.read();
    if (head === null) return; // nothing yet
    const n = Math.min(head.length, HTTP2_PREFACE.length);
    const matches = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
    socket.unshift(head);
    if (matches && n < HTTP2_PREFACE.length) return; // too few bytes to tell yet: wait for more
    socket.off("readable", onReadable);
    socket.off("error", onError);
    route(matches);
    if (!matches) socket.resume();
  };
  const onError = () => socket.destroy();
  socket.on("readable", onReadable);
  socket.on("error", onError);
}
