/**
 * Per-connection limits. Each call's context carries the connection it came on (an HTTP/2 session, or an
 * HTTP/1.1 socket), so a limit can count what one client holds open across its calls.
 */
import { createContextKey } from "@connectrpc/connect";

export const CONNECTION = createContextKey<object | null>(null, { description: "the call's HTTP connection" });

/** Counts what each connection holds; entries go with their connections. */
export class PerConnection {
  private readonly counts = new WeakMap<object, number>();

  constructor(private readonly limit: number) {}

  /** Takes one slot for `conn`; false when it already holds `limit`. */
  take(conn: object | null): boolean {
    if (conn === null) return true;
    const n = this.counts.get(conn) ?? 0;
    if (n >= this.limit) return false;
    this.counts.set(conn, n + 1);
    return true;
  }

  give(conn: object | null): void {
    if (conn === null) return;
    this.counts.set(conn, Math.max(0, (this.counts.get(conn) ?? 1) - 1));
  }
}
