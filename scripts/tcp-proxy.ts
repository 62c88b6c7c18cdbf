/**
 * A TCP proxy for fault tests: it sits between two processes (a replica and Postgres, a worker and its
 * replica) and can stop delivering bytes in either direction without closing anything, which is what a
 * half-open connection, a stalled link or a one-way partition looks like to both ends.
 *
 *   "up"   client → target (a worker's messages to its replica, a replica's queries to Postgres)
 *   "down" target → client (the replica's replies, Postgres's answers)
 *
 * hold(direction) stops reading from the sending side, so the bytes wait in its socket buffers and
 * TCP flow control holds the sender back; nothing is lost or closed. release() delivers what waited
 * and goes on. reset() ends every connection at once with a TCP reset, as a restarted peer or a
 * dropped NAT entry would. refuse() makes the target look down: every connection is reset and new ones
 * are reset as they come, until accept(). Connections opened while a direction is held are held the
 * same way.
 */
import net from "node:net";

export type Direction = "up" | "down" | "both";

interface Pair {
  client: net.Socket;
  target: net.Socket;
  /** The target's side was reset alone (resetTargetSide): the client's side stays open and silent. */
  orphaned?: boolean;
}

export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private heldUp = false;
  private heldDown = false;
  private refusing = false;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /** Listens on a free loopback port and forwards every connection to `target`. */
  static async start(target: { host?: string; port: number }): Promise<TcpProxy> {
    let proxy!: TcpProxy;
    const server = net.createServer((client) => proxy.forwardConnection(client, target));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    return proxy;
  }

  /** Connections open now. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Stops delivering bytes in `direction` (nothing is closed or dropped). */
  hold(direction: Direction): void {
    if (direction !== "down") this.heldUp = true;
    if (direction !== "up") this.heldDown = true;
    for (const p of this.pairs) this.apply(p);
  }

  /** Delivers what was held and carries on in both directions. */
  release(): void {
    this.heldUp = this.heldDown = false;
    for (const p of this.pairs) this.apply(p);
  }

  /** Ends every open connection with a TCP reset; new connections are forwarded as before. */
  reset(): void {
    for (const p of this.pairs) {
      p.orphaned = false;
      p.client.resetAndDestroy();
      p.target.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /**
   * Resets the open connections on the target's side only: the target sees them reset, while the
   * client sees nothing at all (what it sends waits unread), as after a reset by a middlebox that only
   * one end received. New connections are forwarded as before.
   */
  resetTargetSide(): void {
    for (const p of this.pairs) {
      p.client.pause();
      p.orphaned = true;
      p.target.resetAndDestroy();
    }
  }

  /** The target looks down: open connections are reset, and so is every new one until accept(). */
  refuse(): void {
    this.refusing = true;
    this.reset();
  }

  /** Forwards new connections again after refuse(). */
  accept(): void {
    this.refusing = false;
  }

  /** Stops listening and resets every connection. */
  async close(): Promise<void> {
    this.reset();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private forwardConnection(client: net.Socket, target: { host?: string; port: number }): void {
    if (this.refusing) {
      client.on("error", () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: target.host ?? "127.0.0.1", port: target.port });
    const pair: Pair = { client, target: upstream };
    this.pairs.add(pair);
    this.forward(client, upstream, () => this.heldUp);
    this.forward(upstream, client, () => this.heldDown);
    this.apply(pair);
    const end = () => {
      if (pair.orphaned) return; // the client's side is left hanging on purpose; reset() or close() ends it
      if (!this.pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
  }

  /** Copies `from` to `to`, pausing `from` while `to` is full and never resuming it while held. */
  private forward(from: net.Socket, to: net.Socket, held: () => boolean): void {
    from.on("data", (chunk) => {
      if (!to.write(chunk)) from.pause();
    });
    to.on("drain", () => {
      if (!held()) from.resume();
    });
    from.on("end", () => to.end());
  }

  /** Pausing a socket stops reading it: its bytes wait in the kernel and the sender is held back. */
  private apply(p: Pair): void {
    if (this.heldUp) p.client.pause();
    else p.client.resume();
    if (this.heldDown) p.target.pause();
    else p.target.resume();
  }
}
