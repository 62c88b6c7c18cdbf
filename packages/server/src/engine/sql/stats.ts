/** Statements of the status counts and the sampled queue stats (the dashboard's tabs and charts). */
import type { CountQuery, StatsSample, StatusCount, TaskStatus } from "../types.js";
import type { Db } from "./db.js";
import { escapeLike, statementValues } from "./filter.js";

/** Counting stops here: beyond it the dashboard shows "10,000+", and a count never reads the whole history. */
const COUNT_CAP = 10_000;

/** The first key of the advisory lock that lets one replica at a time write a sample. */
const STATS_LOCK_NAMESPACE = 7_302_146;

const ACTIVE: TaskStatus[] = ["pending", "running", "cancelling"];
const FINAL: TaskStatus[] = ["completed", "failed", "canceled", "stuck"];

/**
 * How many tasks are in each status, each count stopping at COUNT_CAP + 1. One subquery per status with
 * the status written as a literal, so that the planner can use the partial indexes made for it
 * (tasks_claim_idx for pending, history_unsuccessful_idx for the final statuses but completed).
 */
export async function taskCountsByStatus(db: Db, q: CountQuery): Promise<StatusCount[]> {
  const { values, param } = statementValues();
  const where: string[] = [];
  if (q.queue !== null) where.push(`queue = ${param(q.queue)}`);
  if (q.typePrefix !== null) where.push(`type like ${param(`${escapeLike(q.typePrefix)}%`)}`);
  if (q.origin !== null) where.push(`origin = ${param(q.origin)}`);
  const cap = param(COUNT_CAP + 1);
  const filter = where.map((w) => ` and ${w}`).join("");
  const count = (table: string, status: TaskStatus) =>
    `(select count(*) from (select 1 from taskq.${table} where status = '${status}'${filter} limit ${cap}) c)::int4 as ${status}`;
  const { rows } = await db.query<Record<TaskStatus, number>>({
    text: `select ${[...ACTIVE.map((s) => count("tasks", s)), ...FINAL.map((s) => count("history", s))].join(",\n")}`,
    values,
  });
  return [...ACTIVE, ...FINAL].map((status) => ({
    status,
    count: Math.min(rows[0][status], COUNT_CAP),
    more: rows[0][status] > COUNT_CAP,
  }));
}

/**
 * Takes the lock that lets one replica at a time write a sample, for the rest of the transaction,
 * waiting for a replica that holds it. Call it before queueStatsSample, in the same transaction, so that
 * the sample's statement reads what the replica before it committed.
 */
export async function queueStatsLock(db: Db): Promise<void> {
  await db.query("select pg_advisory_xact_lock($1, 0)", [STATS_LOCK_NAMESPACE]);
}

/**
 * Writes one sample of every queue (those named, and any that holds or finished tasks) at `now`, unless one was written less than `minGapMs` ago: each
 * queue's pending and running tasks now, and its tasks that finished in the window that follows the
 * previous sample's (the first sample's window is `firstWindowMs` long). Windows are read `lagMs` behind
 * `now`, so that a finish committed a moment after the time it records still falls into a window read
 * after it. Deletes samples older than `keepMs`. Returns whether it wrote a sample.
 */
export async function queueStatsSample(db: Db, p: { now: Date; queues: string[]; minGapMs: number; lagMs: number; keepMs: number; firstWindowMs: number }): Promise<boolean> {
  const { rows } = await db.query<{ written: boolean }>({
    name: "queueStatsSample",
    text: `
      with last as (select max(at) as at from taskq.queue_stats),
      go as (select (select at from last) is null or (select at from last) <= $1::timestamptz - $2 * interval '1 ms' as ok),
      bounds as (
        select coalesce((select at from last), $1::timestamptz - $5 * interval '1 ms') - $3 * interval '1 ms' as since,
               $1::timestamptz - $3 * interval '1 ms' as until
      ),
      depth as (
        select queue, count(*) filter (where status = 'pending') as pending, count(*) filter (where status <> 'pending') as running
        from taskq.tasks where (select ok from go) group by queue
      ),
      finished as (
        select queue, count(*) filter (where status = 'completed') as completed, count(*) filter (where status = 'failed') as failed,
               count(*) filter (where status = 'canceled') as canceled, count(*) filter (where status = 'stuck') as stuck
        from taskq.history, bounds
        where (select ok from go) and finished_at > bounds.since and finished_at <= bounds.until
        group by queue
      ),
      names as (select unnest($6::text[]) as name union select queue from depth union select queue from finished),
      written as (
        insert into taskq.queue_stats (at, queue, pending, running, completed, failed, canceled, stuck)
        select $1, n.name, coalesce(d.pending, 0), coalesce(d.running, 0),
               coalesce(f.completed, 0), coalesce(f.failed, 0), coalesce(f.canceled, 0), coalesce(f.stuck, 0)
        from names n left join depth d on d.queue = n.name left join finished f on f.queue = n.name
        where (select ok from go)
        returning 1
      ),
      pruned as (delete from taskq.queue_stats where (select ok from go) and at < $1::timestamptz - $4 * interval '1 ms')
      select exists (select from written) as written`,
    values: [p.now, p.minGapMs, p.lagMs, p.keepMs, p.firstWindowMs, p.queues],
  });
  return rows[0].written;
}

/** The samples taken after `since`, oldest first, of one queue or of all. */
export async function queueStatsList(db: Db, since: Date, queue: string | null): Promise<StatsSample[]> {
  const { rows } = await db.query<StatsSample>({
    name: "queueStatsList",
    text: `
      select at, queue, pending, running, completed, failed, canceled, stuck from taskq.queue_stats
      where at > $1 and ($2::text is null or queue = $2) order by at, queue`,
    values: [since, queue],
  });
  return rows;
}
