/** What explainWaits needs to know about queues and workers, in one statement. */
import type { Db } from "./db.js";

export interface WaitingFacts {
  paused: Set<string>;
  /** Queue → tasks running or cancelling in it, on every replica (every queue that has any). */
  running: Map<string, number>;
  /** The live worker sessions: what they run, and their credits at their replica's last heartbeat. */
  workers: { types: string[]; queues: string[]; credits: number }[];
}

export async function waitingFactsRead(db: Db, queues: string[], staleAfterMs: number): Promise<WaitingFacts> {
  const { rows } = await db.query<{ paused: string[]; running: Record<string, number>; workers: WaitingFacts["workers"] | null }>({
    name: "waitingFactsRead",
    text: `
      select
        array(select q.name from taskq.queues q where q.paused and q.name = any($1::text[])) as paused,
        (select coalesce(jsonb_object_agg(queue, n), '{}') from
           (select queue, count(*) as n from taskq.tasks where status <> 'pending' group by queue) r) as running,
        (select jsonb_agg(jsonb_build_object('types', ws.task_types, 'queues', ws.queues, 'credits', ws.credits))
         from taskq.worker_sessions ws
         where ws.heartbeat_at > now() - make_interval(secs => $2 / 1000.0)) as workers`,
    values: [queues, staleAfterMs],
  });
  const r = rows[0];
  return { paused: new Set(r.paused), running: new Map(Object.entries(r.running).map(([q, n]) => [q, Number(n)])), workers: r.workers ?? [] };
}
