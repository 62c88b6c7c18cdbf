/**
 * Engine errors. Each carries a kind that the RPC layer maps to a status code in one place
 * (server/rpc/errors.ts); the engine itself never speaks of gRPC.
 */
export type EngineErrorKind =
  | "invalid_argument"
  | "not_found"
  | "failed_precondition"
  | "resource_exhausted"
  | "unavailable";

export class EngineError extends Error {
  constructor(
    readonly kind: EngineErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "EngineError";
  }
}

export const invalidArgument = (message: string) => new EngineError("invalid_argument", message);
export const notFound = (message: string) => new EngineError("not_found", message);
export const failedPrecondition = (message: string) => new EngineError("failed_precondition", message);
export const unavailable = (message: string) => new EngineError("unavailable", message);

/** Errors from node-postgres and the network that mean "the database cannot be reached right now". */
const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "57P01", "57P02", "57P03", "08000", "08001", "08003", "08006"]);
/** node-postgres raises these without a code. */
const UNREACHABLE_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed and is not queryable)/;

export function isDatabaseUnreachable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === "string" && UNREACHABLE_CODES.has(e.code)) return true;
  return typeof e?.message === "string" && UNREACHABLE_MESSAGES.test(e.message);
}
