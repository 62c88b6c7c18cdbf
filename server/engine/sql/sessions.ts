/** Worker session rows: one per connected worker stream, heartbeated by the replica that holds it. */
import type { Db } from "./db.js";

export async function sessionInsert(
  db: Db,
  s: { id: string; replicaId: string; workerName: string; taskTypes: string[]; queues: string[] },
  now: Date,
): Promise<void> {
  await db.query(
    `insert into taskq.worker_sessions (id, replica_id, worker_name, task_types, queues, connected_at, heartbeat_at)
     values ($1, $2, $3, $4, $5, $6, $6)`,
    [s.id, s.replicaId, s.workerName, s.taskTypes, s.queues, now],
  );
}

export async function sessionDelete(db: Db, id: string): Promise<void> {
  await db.query("delete from taskq.worker_sessions where id = $1", [id]);
}

/** Marks every session of a replica alive. */
export async function sessionHeartbeat(db: Db, replicaId: string, now: Date): Promise<void> {
  await db.query({
    name: "sessionHeartbeat",
    text: "update taskq.worker_sessions set heartbeat_at = $2 where replica_id = $1",
    values: [replicaId, now],
  });
}
