/**
 * The one mapping from engine errors to RPC status codes. Anything that is not an EngineError (or an
 * error already carrying a code) is INTERNAL: logged here at error level with its cause, never sent to
 * the caller. A database that cannot be reached is UNAVAILABLE, so clients know to retry.
 *
 * A stream whose other end went away (a worker killed, its connection reset, the server closing its
 * connections at shutdown) is normal operation, not a fault: it is logged at debug level, without a
 * stack, and answered CANCELED (an answer nobody is left to read).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { EngineError, isDatabaseUnreachable, type EngineErrorKind } from "../engine/index.js";

const CODE_OF: Record<EngineErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
};

export function toConnectError(err: unknown, log: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof EngineError) return new ConnectError(err.message, CODE_OF[err.kind]);
  if (isDatabaseUnreachable(err)) return new ConnectError("database unavailable; retry shortly", Code.Unavailable);
  const code = (err as { code?: string } | null)?.code;
  // Class 22 (data exception): a value the edge let through that Postgres cannot take, such as a
  // tampered page token naming a date that does not exist. It is the caller's input, not our fault.
  if (code?.startsWith("22")) return new ConnectError("invalid value in request", Code.InvalidArgument);
  const gone = peerGone(err);
  if (gone) {
    log.debug({ cause: gone }, "the stream ended abruptly: the other end went away");
    return new ConnectError("the stream ended abruptly", Code.Canceled);
  }
  log.error({ err }, "internal error");
  return new ConnectError("internal error", Code.Internal);
}

/** Wraps an implementation method so every error leaving it goes through toConnectError. */
export function mapErrors<A extends unknown[], R>(log: Logger, fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (err) {
      throw toConnectError(err, log);
    }
  };
}

/**
 * Node's codes for a stream or connection that ended without a proper close from the other end:
 * ERR_STREAM_PREMATURE_CLOSE when a request body is aborted before its end (the way an HTTP/2 stream
 * of a killed worker ends), the HTTP/2 stream and session errors of a reset or a GOAWAY, and the
 * socket's own resets. (ECONNRESET and EPIPE from node-postgres are matched before this, as the
 * database being unreachable.)
 */
const PEER_GONE_CODES = new Set([
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_STREAM_DESTROYED",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_INVALID_STREAM",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ECONNRESET",
  "EPIPE",
]);

/** "code: message" of the error (or a cause of it) saying the other end went away, else null. */
export function peerGone(err: unknown): string | null {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && PEER_GONE_CODES.has(code)) return `${code}: ${e.message}`;
  }
  return null;
}
