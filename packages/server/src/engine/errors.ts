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
/**
 * node-postgres raises these without a code. "Query read timeout": no answer within the pool's
 * query_timeout; "timeout expired": a new connection did not finish its startup within its
 * connectionTimeoutMillis. Over a stalled link both mean what a refused connection means: this replica
 * cannot reach the database now (see the pool in app.ts).
 */
const UNREACHABLE_MESSAGES =
  /^(Connection terminated|timeout exceeded when trying to connect|timeout expired|Query read timeout|Client has encountered a connection error|Client was closed and is not queryable)/;

export function isDatabaseUnreachable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === "string" && UNREACHABLE_CODES.has(e.code)) return true;
  return typeof e?.message === "string" && UNREACHABLE_MESSAGES.test(e.message);
}

/**
 * Runs `fn`; while it fails because the database cannot be reached, waits (doubling from `minMs` up to
 * `maxMs`) and runs it again, telling `onRetry` each time. Any other error, or one after `giveUp()`
 * says so, is thrown.
 */
export async function retryWhileUnreachable<T>(
  fn: () => Promise<T>,
  opts: { minMs: number; maxMs: number; giveUp?: () => boolean; onRetry(err: Error, retryInMs: number): void },
): Promise<T> {
  for (let delay = opts.minMs; ; delay = Math.min(delay * 2, opts.maxMs)) {
    try {
      return await fn();
    } catch (err) {
      if (!isDatabaseUnreachable(err) || opts.giveUp?.()) throw err;
      opts.onRetry(err as Error, delay);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
