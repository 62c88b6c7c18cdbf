/**
 * The listening server: one HTTP/2 port (cleartext, or TLS when configured) serving gRPC, gRPC-Web and
 * Connect for TaskQueue, WorkerService, grpc.health.v1 and grpc.reflection.v1, behind bearer-token auth
 * when tokens are configured. close() ends every open HTTP/2 session, so streams do not keep a stopped
 * server (or a test run) alive.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import type { TlsConfig } from "../config.js";
import type { Engine } from "../engine/engine.js";
import { Health, file_grpc_health_v1_health } from "../../sdk/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../sdk/gen/grpc/reflection/v1/reflection_pb.js";
import { TaskQueue, file_taskq_v1_task_queue } from "../../sdk/gen/taskq/v1/task_queue_pb.js";
import { WorkerService, file_taskq_v1_worker } from "../../sdk/gen/taskq/v1/worker_pb.js";
import { authInterceptor, type AuthToken } from "./auth.js";
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
}

export interface RunningServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export function routes(engine: Engine, log: Logger, opts: Pick<ServerOptions, "probe">) {
  const served = [TaskQueue.typeName, WorkerService.typeName, Health.typeName, ServerReflection.typeName];
  return (router: ConnectRouter) => {
    router.service(TaskQueue, taskQueueService(engine, log));
    router.service(WorkerService, workerService(engine, log));
    router.service(Health, healthService([TaskQueue.typeName, WorkerService.typeName], opts.probe));
    router.service(
      ServerReflection,
      reflectionService([file_taskq_v1_task_queue, file_taskq_v1_worker, file_grpc_health_v1_health], served),
    );
  };
}

export async function listen(engine: Engine, log: Logger, opts: ServerOptions): Promise<RunningServer> {
  const handler = connectNodeAdapter({
    routes: routes(engine, log, opts),
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    interceptors: opts.authTokens.length > 0 ? [authInterceptor(opts.authTokens)] : [],
  });
  const server = opts.tls
    ? http2.createSecureServer(
        {
          cert: opts.tls.cert,
          key: opts.tls.key,
          ca: opts.tls.clientCa ?? undefined,
          requestCert: opts.tls.clientCa !== null,
          rejectUnauthorized: opts.tls.clientCa !== null,
        },
        handler,
      )
    : http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    port,
    url: `${opts.tls ? "https" : "http"}://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
        setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, 1_000).unref();
      }),
  };
}
