/**
 * The replica's one LISTEN connection. Everything on this replica that waits for database events
 * (the lease dispatcher, worker sessions awaiting cancels, task watchers) subscribes here, so watchers
 * cost no database connection each. If the connection drops, it reconnects with backoff and then calls
 * every "reconnected" subscriber, since notifications sent while it was down are lost: they re-read.
 */
import pg from "pg";
import type { Logger } from "pino";
import { CHANNEL_CANCEL, CHANNEL_DISPATCH, CHANNEL_SCHEDULE, CHANNEL_TASK } from "./sql/db.js";

type Channel = typeof CHANNEL_DISPATCH | typeof CHANNEL_TASK | typeof CHANNEL_CANCEL | typeof CHANNEL_SCHEDULE;
type Listener = (payload: string) => void;

const CHANNELS: Channel[] = [CHANNEL_DISPATCH, CHANNEL_TASK, CHANNEL_CANCEL, CHANNEL_SCHEDULE];
const RECONNECT_MAX_MS = 5_000;

export class Notifier {
  private client: pg.Client | null = null;
  private readonly listeners = new Map<Channel | "reconnected", Set<Listener>>();
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly connection: pg.ClientConfig,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  on(channel: Channel | "reconnected", fn: Listener): () => void {
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => {});
  }

  private emit(channel: Channel | "reconnected", payload: string): void {
    for (const fn of this.listeners.get(channel) ?? []) {
      try {
        fn(payload);
      } catch (err) {
        this.log.error({ err, channel }, "notification listener failed");
      }
    }
  }

  private async connect(): Promise<void> {
    const client = new pg.Client(this.connection);
    client.on("notification", (n) => this.emit(n.channel as Channel, n.payload ?? ""));
    client.on("error", (err) => this.lost(client, err));
    client.on("end", () => this.lost(client, new Error("connection ended")));
    try {
      await client.connect();
      await client.query(CHANNELS.map((c) => `listen ${c}`).join("; "));
    } catch (err) {
      client.removeAllListeners("end");
      await client.end().catch(() => {});
      throw err;
    }
    this.client = client;
  }

  private lost(client: pg.Client, err: Error): void {
    if (this.stopped || this.client !== client) return;
    this.log.warn({ err: err.message }, "notification connection lost; reconnecting");
    this.client = null;
    client.end().catch(() => {});
    this.reconnect(0);
  }

  private reconnect(attempt: number): void {
    const delay = Math.min(100 * 2 ** attempt, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.connect().then(
        () => {
          this.log.info("notification connection restored");
          this.emit("reconnected", "");
        },
        () => {
          if (!this.stopped) this.reconnect(attempt + 1);
        },
      );
    }, delay);
  }
}
