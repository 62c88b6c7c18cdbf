/**
 * The one mapping from engine errors to RPC status codes. Anything that is not an EngineError (or an
 * error already carrying a code) is INTERNAL: logged here with its cause, never sent to the caller.
 * A database that cannot be reached is UNAVAILABLE, so clients know to retry.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { EngineError, isDatabaseUnreachable, type EngineErrorKind } from "../engine/errors.js";

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
