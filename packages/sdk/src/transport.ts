/**
 * The connection the SDK speaks gRPC over: HTTP/2 to a taskq server, in cleartext (http://) or TLS
 * (https://), with a bearer token on every call when one is given, and the active OpenTelemetry trace
 * context on every dispatch (tracing.ts). Each client and worker owns one
 * session manager, so close() can end the HTTP/2 session instead of leaving it open (idle sessions
 * would otherwise keep a process alive for minutes).
 */
import type { Interceptor, Transport } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { DEFAULT_PING_INTERVAL_MS, DEFAULT_URL } from "./defaults.js";
import { Code, TaskqError } from "./errors.js";
import { traceInterceptor } from "./tracing.js";

/** How to reach a server: shared by TaskClient and Worker. */
export interface ConnectionOptions {
  /** The server, such as https://taskq.internal:50051; default DEFAULT_URL, a server on this machine. */
  url?: string;
  /** Sent as `authorization: Bearer <token>` when the server has auth on. */
  token?: string;
  /** For https:// URLs: a CA to trust (PEM) and, for mutual TLS, this client's certificate and key. */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
}

export interface Connection {
  transport: Transport;
  close(): void;
}

/** Opens a connection to a server (lazily: nothing is sent before the first call); `pingIntervalMs` defaults to DEFAULT_PING_INTERVAL_MS. */
export function connect(opts: ConnectionOptions = {}, tuning: { pingIntervalMs?: number } = {}): Connection {
  const url = opts.url ?? DEFAULT_URL;
  let sessionManager: Http2SessionManager;
  try {
    sessionManager = new Http2SessionManager(url, { pingIntervalMs: tuning.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS }, opts.tls);
  } catch (err) {
    throw new TaskqError(`url: "${url}" is not a URL`, Code.InvalidArgument, { cause: err });
  }
  // The active OpenTelemetry context goes with each dispatch (tracing.ts).
  const interceptors: Interceptor[] = [traceInterceptor];
  const token = opts.token;
  if (token) {
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    });
  }
  const transport = createGrpcTransport({ baseUrl: url, sessionManager, interceptors });
  return { transport, close: () => sessionManager.abort() };
}
