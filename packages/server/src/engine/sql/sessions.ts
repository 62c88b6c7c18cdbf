/**
 * Worker session rows: one per connected worker stream, heartbeated by the replica that holds it.
 * Liveness is measured by the database's clock (now()), not the engine's: it is about real processes
 * dying in real time, and one clock keeps replicas with skewed clocks in agreement.
 */
import type { SessionRow } from "../types.js";
import type { Db } from "./db.js";

/** Writes a session's row (marking it alive again if it exists). */
export async function sessionUpsert(db: Db, s: SessionRow): Promise<void> {
  await db.query({
    name: "sessionUpsert",
    text: `insert into taskq.worker_sessions
             (id, replica_id, worker_name, task_types, queues, type_timeouts, connected_at, heartbeat_at)
           values ($1, $2, $3, $4, $5, $6, $7, now())
           on conflict (id) do update set heartbeat_at = now()`,
    values: [s.id, s.replicaId, s.workerName, s.taskTypes, s.queues, JSON.stringify(s.typeTimeouts), s.connectedAt],
  });
}

export async function sessionDelete(db: Db, id: string): Promise<void> {
  await db.query("delete from taskq.worker_sessions where id = $1", [id]);
}

/**
 * Marks these sessions alive; returns the ids it found (a missing one was reaped). A replica names the
 * sessions it holds open, never "all of mine": a session whose close failed (the database was away)
 * must go stale, so that a reaper recovers its leases.
 */
export async function sessionHeartbeat(db: Db, ids: string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ id: string }>({
    name: "sessionHeartbeat",
    text: "update taskq.worker_sessions set heartbeat_at = now() where id = any($1::uuid[]) returning id::text",
    values: [ids],
  });
  return new Set(rows.map((r) => r.id));
}

/** Deletes the rows of sessions not heartbeated for `staleAfterMs`; returns how many. */
export async function sessionDeleteStale(db: Db, staleAfterMs: number): Promise<number> {
  const { rowCount } = await db.query({
    name: "sessionDeleteStale",
    text: "delete from taskq.worker_sessions where heartbeat_at <= now() - make_interval(secs => $1 / 1000.0)",
    values: [staleAfterMs],
  });
  return rowCount ?? 0;
}
