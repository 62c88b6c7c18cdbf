/**
 * Bearer-token auth: every call but the health check carries `authorization: Bearer <token>`, and the
 * token's role decides what it may call.
 *
 *   client  dispatch, status, watch, interrupt and the lists (TaskQueue, except the admin's methods)
 *   worker  WorkerService.Connect
 *   admin   everything, including PauseQueue, ResumeQueue, Retry, InterruptMany, RetryMany and ListAudit
 *
 * A missing or unknown token is UNAUTHENTICATED; a known token whose role does not cover the method is
 * PERMISSION_DENIED. Both are decided before the implementation runs, so a refused call changes nothing.
 * Tokens are held as SHA-256 digests and compared in constant time. The token a call was let in with is
 * in its context (CALLER), so the audit log can name who acted (`actorOf`).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, createContextKey, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { Health } from "@taskq/protocol/grpc";
import { TaskQueue } from "@taskq/protocol";
import { WorkerService } from "@taskq/protocol";

export const ROLES = ["client", "worker", "admin"] as const;
export type Role = (typeof ROLES)[number];

export interface AuthToken {
  /** Who holds it, for logs. */
  name: string;
  role: Role;
  /** SHA-256 of the token. */
  sha256: Buffer;
}

export const tokenDigest = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest();

/** Methods only an admin may call; every other TaskQueue method is open to clients as well. */
const ADMIN_ONLY = new Set(
  [
    TaskQueue.method.pauseQueue,
    TaskQueue.method.resumeQueue,
    TaskQueue.method.retry,
    TaskQueue.method.interruptMany,
    TaskQueue.method.retryMany,
    TaskQueue.method.listAudit,
  ].map((m) => m.name),
);

/** The token a call was let in with; null when the server runs without auth. */
const CALLER = createContextKey<AuthToken | null>(null, { description: "the auth token of the call" });

/** Who made a call, for the audit log: its token's name (every token has one), or "anonymous" without auth. */
export function actorOf(values: ContextValues): string {
  const token = values.get(CALLER);
  return token ? token.name || token.role : "anonymous";
}

/** The roles that may call a method, or "anyone" for methods that need no token. */
function rolesFor(service: string, method: string): readonly Role[] | "anyone" {
  if (service === Health.typeName) return "anyone";
  if (service === WorkerService.typeName) return ["worker", "admin"];
  if (service === TaskQueue.typeName) return ADMIN_ONLY.has(method) ? ["admin"] : ["client", "admin"];
  // Reflection and anything else: any valid token.
  return ROLES;
}

/** The token a request carries, or null. */
function bearer(header: Headers): string | null {
  const value = header.get("authorization");
  const match = value ? /^Bearer\s+(\S+)\s*$/i.exec(value) : null;
  return match ? match[1] : null;
}

export function authenticate(tokens: readonly AuthToken[], header: Headers): AuthToken | null {
  const presented = bearer(header);
  if (presented === null) return null;
  const digest = tokenDigest(presented);
  // Compare against every token, so the time taken does not tell which one matched.
  let found: AuthToken | null = null;
  for (const t of tokens) if (timingSafeEqual(t.sha256, digest)) found = t;
  return found;
}

export function authInterceptor(tokens: readonly AuthToken[]): Interceptor {
  return (next) => async (req) => {
    const allowed = rolesFor(req.service.typeName, req.method.name);
    if (allowed === "anyone") return next(req);
    const token = authenticate(tokens, req.header);
    if (!token) throw new ConnectError("a valid bearer token is required (authorization: Bearer <token>)", Code.Unauthenticated);
    if (!allowed.includes(token.role)) {
      throw new ConnectError(`role ${token.role} may not call ${req.service.typeName}/${req.method.name}`, Code.PermissionDenied);
    }
    req.contextValues.set(CALLER, token);
    return next(req);
  };
}
