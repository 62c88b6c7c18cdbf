/**
 * Worker session rows: one per connected worker stream, heartbeated by the replica that holds it.
 * Liveness is measured by the database's clock (now()), not the engine's: it is about real processes
 * dying in real time, and one clock keeps replicas with skewed clocks in agreement.
 */
import type { SessionRow, WorkerInfo } from "../types.js";
import type { Db } from "./db.js";

/** Writes a session's row (marking it alive again if it exists). */
export async function sessionUpsert(db: Db, s: SessionRow): Promise<void> {
  await db.query({
    name: "sessionUpsert",
    text: `insert into taskq.worker_sessions
             (id, replica_id, worker_name, task_types, queues, type_timeouts, connected_at, heartbeat_at, concurrency)
           values ($1, $2, $3, $4, $5, $6, $7, now(), $8)
           on conflict (id) do update set heartbeat_at = now()`,
    values: [s.id, s.replicaId, s.workerName, s.taskTypes, s.queues, JSON.stringify(s.typeTimeouts), s.connectedAt, s.concurrency],
  });
}

export async function sessionDelete(db: Db, id: string): Promise<void> {
  await db.query("delete from taskq.worker_sessions where id = $1", [id]);
}

/** One session's heartbeat: what ListWorkers shows of it besides its hello. */
export interface SessionBeat {
  id: string;
  credits: number;
  /** How long ago the worker last sent anything. */
  silentForMs: number;
}

/**
 * Marks these sessions alive; returns the ids it found (a missing one was reaped). A replica names the
 * sessions it holds open, never "all of mine": a session whose close failed (the database was away)
 * must go stale, so that a reaper recovers its leases.
 */
export async function sessionHeartbeat(db: Db, beats: SessionBeat[]): Promise<Set<string>> {
  const { rows } = await db.query<{ id: string }>({
    name: "sessionHeartbeat",
    text: `update taskq.worker_sessions ws
           set heartbeat_at = now(), credits = b.credits, heard_at = now() - make_interval(secs => b.silent_ms / 1000.0)
           from unnest($1::uuid[], $2::int4[], $3::float8[]) as b(id, credits, silent_ms)
           where ws.id = b.id
           returning ws.id::text`,
    values: [beats.map((b) => b.id), beats.map((b) => b.credits), beats.map((b) => b.silentForMs)],
  });
  return new Set(rows.map((r) => r.id));
}

/** How many running task ids ListWorkers shows per worker. */
const RUNNING_IDS_SHOWN = 100;

/**
 * The sessions heartbeated within `staleAfterMs`, on every replica, oldest connection first, with the
 * tasks each runs now.
 */
export async function sessionList(db: Db, staleAfterMs: number): Promise<WorkerInfo[]> {
  const { rows } = await db.query<{
    id: string;
    worker_name: string;
    replica_id: string;
    task_types: string[];
    queues: string[];
    concurrency: number;
    credits: number;
    running: number;
    running_ids: string[];
    connected_at: Date;
    heard_at: Date | null;
    heartbeat_at: Date;
  }>({
    name: "sessionList",
    text: `
      select ws.id::text, ws.worker_name, ws.replica_id::text, ws.task_types, ws.queues, ws.concurrency, ws.credits,
             ws.connected_at, ws.heard_at, ws.heartbeat_at,
             coalesce(r.running, 0) as running, coalesce(r.running_ids, '{}') as running_ids
      from taskq.worker_sessions ws
      left join (
        select t.session_id, count(*)::int4 as running,
               (array_agg(t.id::text order by t.started_at, t.id))[1:${RUNNING_IDS_SHOWN}] as running_ids
        from taskq.tasks t
        where t.status in ('running', 'cancelling')
        group by t.session_id
      ) r on r.session_id = ws.id
      where ws.heartbeat_at > now() - make_interval(secs => $1 / 1000.0)
      order by ws.connected_at, ws.id`,
    values: [staleAfterMs],
  });
  return rows.map((r) => ({
    sessionId: r.id,
    name: r.worker_name,
    replicaId: r.replica_id,
    taskTypes: r.task_types,
    queues: r.queues,
    concurrency: r.concurrency,
    credits: r.credits,
    running: r.running,
    runningTaskIds: r.running_ids,
    connectedAt: r.connected_at,
    heardAt: r.heard_at,
    heartbeatAt: r.heartbeat_at,
  }));
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
