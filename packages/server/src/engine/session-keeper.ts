/**
 * The session keeper of one replica: every heartbeat interval it marks the replica's open worker
 * sessions alive in the database, which extends their leases' validity by what the database confirmed,
 * and it ends the sessions that can no longer be kept:
 *   - a session whose row another replica's reaper removed (this replica stalled past the stale limit):
 *     its leases were recovered and may run elsewhere already;
 *   - one whose worker went silent, or left the replies unread, for the silence limit;
 *   - one whose leases lapsed because the database has not confirmed it in time (a stalled link): its
 *     worker is moved along, to a replica that can reach the database.
 *
 * States: stopped → running (a timer every heartbeat interval) → stopped. One heartbeat statement at a
 * time: a slow database must not pile them up; the liveness checks run on every tick regardless.
 */
import type { Logger } from "pino";
import type { WorkerSession } from "./session.js";
import type { Db } from "./sql/db.js";
import { sessionHeartbeat } from "./sql/sessions.js";

export interface SessionKeeperOptions {
  heartbeatIntervalMs: number;
  /** A worker silent, or not reading, for this long has its session ended. */
  silentAfterMs: number;
  /** The sessions of this replica, opening and open. */
  sessions(): Iterable<WorkerSession>;
  /** Called on every tick, before the heartbeat (the server's own in-process worker says it is alive). */
  onTick(): void;
}

export class SessionKeeper {
  private timer: NodeJS.Timeout | null = null;
  /** A heartbeat statement is in flight. */
  private beating = false;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly opts: SessionKeeperOptions,
  ) {}

  start(): void {
    if (!this.timer) this.timer = setInterval(() => void this.tick(), this.opts.heartbeatIntervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Heartbeats now (after a reconnect, say), then checks every session's liveness. */
  async tick(): Promise<void> {
    this.opts.onTick();
    await this.heartbeat();
    const { silentAfterMs } = this.opts;
    for (const session of [...this.opts.sessions()]) {
      if (session.silentForMs > silentAfterMs) session.end(`no message from the worker for ${Math.round(session.silentForMs)} ms`);
      else if (session.stalledForMs > silentAfterMs) session.end(`the worker has read nothing for ${Math.round(session.stalledForMs)} ms`);
      else if (session.isOpen && session.validForMs === 0) session.end("the session's leases lapsed: the database has not confirmed it in time");
    }
  }

  /** One statement for every open session; the time it was sent is what the database confirms. */
  private async heartbeat(): Promise<void> {
    const open = [...this.opts.sessions()].filter((s) => s.isOpen);
    if (this.beating || open.length === 0) return;
    this.beating = true;
    const sentAt = performance.now();
    try {
      const alive = await sessionHeartbeat(
        this.db,
        open.map((s) => ({ id: s.id, credits: s.credits, silentForMs: s.silentForMs })),
      );
      for (const session of open) {
        if (alive.has(session.id)) session.confirmed(sentAt);
        else session.end("the session's row was reaped while it lived: its leases were recovered");
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "session heartbeat failed");
    } finally {
      this.beating = false;
    }
  }
}
