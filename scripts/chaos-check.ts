/**
 * The chaos run's verdict (scripts/chaos.ts): once the queue has settled, every dispatched task is
 * checked against what its kind should have become.
 *
 *   lost       dispatched but missing, still pending, or not in its expected final status; or
 *              completed without the side effect of the attempt that completed it
 *   duplicate  an outcome recorded twice (a task both active and finished), or one attempt run twice
 *              (two executions in chaos_runs, or two side effects, of one task and attempt number)
 *   stuck      left RUNNING or CANCELLING, or ended STUCK
 *
 * The retries an operator made (Retry, RetryMany: found by their retry_of) are checked like the tasks they
 * retry; a task retried more than once is a duplicate, and so is a retry its original does not name.
 */
import type pg from "pg";

export type Kind = "chaos.quick" | "chaos.slow" | "chaos.retry" | "chaos.snooze" | "chaos.extend" | "chaos.fail" | "chaos.interrupted";
const EXPECTED: Record<Kind, string> = {
  "chaos.quick": "completed",
  "chaos.slow": "completed",
  "chaos.retry": "completed",
  "chaos.snooze": "completed",
  "chaos.extend": "completed",
  "chaos.fail": "failed",
  "chaos.interrupted": "canceled",
};

export interface Report {
  lost: number;
  duplicate: number;
  stuck: number;
  reruns: number;
  /** Tasks made by Retry or RetryMany. */
  retries: number;
  statuses: Record<string, number>;
  problems: string[];
}

export async function verify(db: pg.Pool, dispatched: Map<string, Kind>): Promise<Report> {
  const problems: string[] = [];
  let lost = 0;
  let duplicate = 0;
  let stuck = 0;
  const active = await db.query<{ id: string; status: string }>("select id::text, status from taskq.tasks");
  const finished = await db.query<{ id: string; status: string; result: { effect?: string; attempt?: number } | null; attempts: number }>(
    "select id::text, status, result, attempts from taskq.history where type like 'chaos.%'",
  );
  const effects = await db.query<{ id: string; task_id: string; attempt: number }>("select id::text, task_id::text, attempt from chaos_effects");
  const retries = await db.query<{ id: string; retry_of: string; retried_as: string | null }>(
    `select t.id::text, t.retry_of::text, h.retried_as::text from (
       select id, retry_of from taskq.tasks where retry_of is not null
       union all select id, retry_of from taskq.history where retry_of is not null
     ) t left join taskq.history h on h.id = t.retry_of order by t.id`,
  );
  const all = new Map(dispatched);
  const retriedAs = new Map<string, string>();
  for (const r of retries.rows) {
    const kind = all.get(r.retry_of);
    if (!kind) continue; // not a chaos task
    all.set(r.id, kind);
    if (retriedAs.has(r.retry_of)) {
      duplicate++;
      problems.push(`duplicate: task ${r.retry_of} was retried as ${retriedAs.get(r.retry_of)} and as ${r.id}`);
    } else if (r.retried_as !== r.id) {
      duplicate++;
      problems.push(`duplicate: task ${r.id} retries ${r.retry_of}, which names ${r.retried_as ?? "no retry"}`);
    }
    retriedAs.set(r.retry_of, r.id);
  }
  const activeById = new Map(active.rows.map((r) => [r.id, r.status]));
  const finishedById = new Map(finished.rows.map((r) => [r.id, r]));
  const effectById = new Map(effects.rows.map((e) => [e.id, e]));
  const statuses: Record<string, number> = {};

  for (const [id, kind] of all) {
    const live = activeById.get(id);
    const done = finishedById.get(id);
    if (live && done) {
      duplicate++;
      problems.push(`duplicate: task ${id} is both ${live} and finished as ${done.status}`);
      continue;
    }
    if (live) {
      statuses[live] = (statuses[live] ?? 0) + 1;
      if (live === "pending") {
        lost++;
        problems.push(`lost: task ${id} (${kind}) is still pending`);
      } else {
        stuck++;
        problems.push(`stuck: task ${id} (${kind}) is left ${live}`);
      }
      continue;
    }
    if (!done) {
      lost++;
      problems.push(`lost: task ${id} (${kind}) was dispatched but does not exist`);
      continue;
    }
    statuses[done.status] = (statuses[done.status] ?? 0) + 1;
    if (done.status === "stuck") {
      stuck++;
      problems.push(`stuck: task ${id} (${kind}) ended STUCK after ${done.attempts} attempts`);
    } else if (done.status !== EXPECTED[kind]) {
      lost++;
      problems.push(`lost: task ${id} (${kind}) ended ${done.status}, expected ${EXPECTED[kind]}`);
    } else if (done.status === "completed") {
      const e = done.result?.effect ? effectById.get(done.result.effect) : undefined;
      if (!e || e.task_id !== id || e.attempt !== done.result?.attempt || done.attempts !== e.attempt) {
        lost++;
        problems.push(`lost: task ${id} completed without the side effect of its completing attempt (${JSON.stringify(done.result)})`);
      }
    }
  }
  // One attempt (task and attempt number) run twice, by its executions or by its side effects, is a
  // duplicate. A run that snoozed does not spend its attempt: the next run has the same number.
  const twice = await db.query<{ task_id: string; attempt: number; n: number }>(
    `select task_id::text, attempt, max(n)::int4 as n from (
       select task_id, attempt, count(*) as n from chaos_runs where end_kind is distinct from 'snoozed' group by 1, 2
       union all
       select task_id, attempt, count(*) from chaos_effects group by 1, 2
     ) x where n > 1 group by 1, 2`,
  );
  for (const t of twice.rows) {
    duplicate++;
    problems.push(`duplicate: task ${t.task_id} attempt ${t.attempt} ran ${t.n} times`);
  }
  const perTask = new Map<string, number>();
  for (const e of effects.rows) perTask.set(e.task_id, (perTask.get(e.task_id) ?? 0) + 1);
  const reruns = [...perTask.values()].reduce((n, c) => n + (c - 1), 0);
  return { lost, duplicate, stuck, reruns, retries: all.size - dispatched.size, statuses, problems };
}
