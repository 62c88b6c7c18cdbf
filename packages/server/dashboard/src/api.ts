/**
 * The dashboard's one way to the server: the SDK's TaskClient ("@taskq/sdk/client"), with the Connect
 * protocol over fetch, on the origin that served the page. When auth is on, the token the operator
 * entered is sent as a bearer token; it is kept in this browser's localStorage until a call says it is
 * wrong.
 */
import type { Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { Code, TaskClient, TaskqError } from "@taskq/sdk/client";

const TOKEN_KEY = "taskq.token";

export const token = {
  get: (): string => localStorage.getItem(TOKEN_KEY) ?? "",
  set: (value: string) => localStorage.setItem(TOKEN_KEY, value),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

const withToken: Interceptor = (next) => (req) => {
  const t = token.get();
  if (t) req.header.set("authorization", `Bearer ${t}`);
  return next(req);
};

export const client = new TaskClient({
  transport: createConnectTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors: [withToken] }),
});

/** True when the server refused the call for want of a (valid) token. */
export const needsToken = (err: unknown): boolean =>
  err instanceof TaskqError && (err.code === Code.Unauthenticated || err.code === Code.PermissionDenied);

/** An error that trying again cannot mend: no such task, or not a task id. */
export const isFinal = (err: unknown): boolean => err instanceof TaskqError && (err.code === Code.NotFound || err.code === Code.InvalidArgument);

export const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Reports the failure of an operator's action (pause, retry, interrupt many), named like "Pausing queue
 * reports". Those calls need an admin token when the server has auth, and a client token is refused
 * with PERMISSION_DENIED: that is said beside the action (`show`), plainly, rather than by sending the
 * operator to the token form, which is for a missing or unknown token (`onAuth`).
 */
export function actionFailed(action: string, err: unknown, onAuth: (err: unknown) => boolean, show: (message: string) => void): void {
  if (err instanceof TaskqError && err.code === Code.PermissionDenied) show(`${action} needs an admin token: the server refused this one (${describe(err)}).`);
  else if (!onAuth(err)) show(`${action} failed: ${describe(err)}`);
}

/** True when the server does not have this call (an older server): the view says so and leaves that part out. */
export const isUnimplemented = (err: unknown): boolean => err instanceof TaskqError && err.code === Code.Unimplemented;
