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
