/**
 * The Node entry's TaskClient: the client of client-core.ts, which also connects by URL over HTTP/2
 * (transport.ts) and ends that connection on close().
 */
import type { Transport } from "@connectrpc/connect";
import { TaskClient as TransportTaskClient, type MergeOptions } from "./client-core.js";
import { connect, type Connection, type ConnectionOptions } from "./transport.js";

/** A server to connect to (default DEFAULT_URL), or a connect Transport made by the caller. */
export type TaskClientOptions = (ConnectionOptions | { transport: Transport }) & MergeOptions;

export class TaskClient extends TransportTaskClient {
  private readonly connection: Connection | null;

  constructor(opts: TaskClientOptions = {}) {
    const connection = "transport" in opts ? null : connect(opts);
    super({ transport: connection?.transport ?? (opts as { transport: Transport }).transport, mergeDispatches: opts.mergeDispatches });
    this.connection = connection;
  }

  override close(): void {
    this.connection?.close();
  }
}
