/**
 * The connection the SDK speaks gRPC over: HTTP/2 to a taskq server. Each client and worker owns one
 * session manager, so close() can end the HTTP/2 session instead of leaving it open (idle sessions
 * would otherwise keep a process alive for minutes).
 */
import type { Transport } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";

export interface Connection {
  transport: Transport;
  close(): void;
}

export function connect(url: string, opts: { pingIntervalMs?: number } = {}): Connection {
  const sessionManager = new Http2SessionManager(url, { pingIntervalMs: opts.pingIntervalMs ?? 15_000 });
  const transport = createGrpcTransport({ baseUrl: url, sessionManager });
  return { transport, close: () => sessionManager.abort() };
}
