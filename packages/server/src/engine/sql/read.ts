/** Statements that read tasks: one task, its log, and the two lists. */
import type { ActiveQuery, ActiveSortColumn, HistoryQuery, LogEntry, TaskRecord } from "../types.js";
import type { Db } from "./db.js";
import { ACTIVE_COLUMNS, HISTORY_COLUMNS, logFromRow, taskFromRow, type TaskRow } from "./rows.js";
import { escapeLike } from "./filter.js";

/** One task from the queue or from history (one snapshot, so never both or neither), without its log. */
export async function taskGet(db: Db, id: string): Promise<TaskRecord | null> {
  const { rows } = await db.query<TaskRow>({
    name: "taskGet",
    text: `
      select ${ACTIVE_COLUMNS}
      from taskq.tasks where id = $1
      union all
      select ${HISTORY_COLUMNS}
      from taskq.history where id = $1`,
    values: [id],
  });
  return rows[0] ? taskFromRow(rows[0]) : null;
}

/**
 * One task with its log steps after `afterSeq`, read by one statement: one round trip, and one
 * snapshot, so a final status is never seen without the steps written before it.
 */
export async function taskGetWithLog(db: Db, id: string, afterSeq: number): Promise<{ task: TaskRecord; log: LogEntry[] } | null> {
  const { rows } = await db.query<TaskRow & { log: { seq: number; at: string; message: string; attempt: number }[] }>({
    name: "taskGetWithLog",
    text: `
      with task as (
        select ${ACTIVE_COLUMNS}
        from taskq.tasks where id = $1
        union all
        select ${HISTORY_COLUMNS}
        from taskq.history where id = $1
      )
      select task.*,
             (select coalesce(json_agg(json_build_object('seq', l.seq, 'at', l.at, 'message', l.message, 'attempt', l.attempt)
                                       order by l.seq), '[]')
              from taskq.task_log l where l.task_id = $1 and l.seq > $2) as log
      from task`,
    // A sequence past any int8 means "after every step": clamp it, rather than let Postgres refuse it.
    values: [id, Math.min(afterSeq, Number.MAX_SAFE_INTEGER)],
  });
  if (!rows[0]) return null;
  const log = rows[0].log.map((l) => logFromRow({ seq: Number(l.seq), at: new Date(l.at), message: l.message, attempt: l.attempt }));
  return { task: taskFromRow(rows[0]), log };
}

/**
 * Sort expressions: never null, so keyset comparisons hold (a waiting task's start sorts first). Status
 * sorts in lifecycle order and title as shown (an untitled task as "Untitled").
 */
const ACTIVE_SORT_EXPR: Record<ActiveSortColumn, string> = {
  id: "tasks.id",
  status: "case status when 'pending' then 1 when 'running' then 2 else 3 end",
  title: "coalesce(nullif(title, ''), 'Untitled')",
  created_at: "created_at",
  started_at: "coalesce(started_at, '-infinity'::timestamptz)",
  attempts: "attempts",
  priority: "priority",
  type: "type",
  origin: "origin",
};

/**
 * One page of the live queue. Keyset pagination on (sort value, id): a page starts strictly after the
 * previous page's last row, so rows inserted meanwhile never shift a page or repeat a row.
 */
export async function taskListActive(db: Db, q: ActiveQuery): Promise<{ tasks: TaskRecord[]; sortValues: string[] }> {
  const where: string[] = [];
  const values: unknown[] = [];
  const param = (v: unknown) => `$${values.push(v)}`;
  if (q.id !== null) where.push(`id = ${param(q.id)}`);
  if (q.titleSearch) where.push(`title ilike ${param(`%${escapeLike(q.titleSearch)}%`)}`);
  if (q.type !== null) where.push(`type = ${param(q.type)}`);
  if (q.typePrefix !== null) where.push(`type like ${param(`${escapeLike(q.typePrefix)}%`)}`);
  if (q.queue !== null) where.push(`queue = ${param(q.queue)}`);
  if (q.statuses.length > 0) where.push(`status = any(${param(q.statuses)}::text[])`);
  if (q.createdAfter) where.push(`created_at >= ${param(q.createdAfter)}`);
  if (q.createdBefore) where.push(`created_at < ${param(q.createdBefore)}`);
  const sort = ACTIVE_SORT_EXPR[q.sortBy];
  const dir = q.descending ? "desc" : "asc";
  if (q.after) {
    const cast = sortCast(q.sortBy);
    where.push(`(${sort}, tasks.id) ${q.descending ? "<" : ">"} (${param(q.after.value)}::${cast}, ${param(q.after.id)}::int8)`);
  }
  const { rows } = await db.query<TaskRow & { sort_value: string }>(
    `select ${ACTIVE_COLUMNS},
            (${sort})::text as sort_value
     from taskq.tasks ${where.length ? `where ${where.join(" and ")}` : ""}
     order by ${sort} ${dir}, tasks.id ${dir} limit ${param(q.limit)}`,
    values,
  );
  return { tasks: rows.map(taskFromRow), sortValues: rows.map((r) => r.sort_value) };
}

function sortCast(c: ActiveSortColumn): string {
  if (c === "created_at" || c === "started_at") return "timestamptz";
  if (c === "id") return "int8";
  if (c === "attempts" || c === "priority" || c === "status") return "int4";
  return "text";
}


/**
 * One page of history, newest first: running and cancelling tasks from the queue, and finished ones.
 * The origin filter is symmetric: USER shows only user rows, SYSTEM only system rows.
 */
export async function taskListHistory(db: Db, q: HistoryQuery): Promise<TaskRecord[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  const param = (v: unknown) => `$${values.push(v)}`;
  if (q.origin) where.push(`origin = ${param(q.origin)}`);
  if (q.statuses.length > 0) where.push(`status = any(${param(q.statuses)}::text[])`);
  if (q.type !== null) where.push(`type = ${param(q.type)}`);
  if (q.typePrefix !== null) where.push(`type like ${param(`${escapeLike(q.typePrefix)}%`)}`);
  if (q.queue !== null) where.push(`queue = ${param(q.queue)}`);
  if (q.createdAfter) where.push(`created_at >= ${param(q.createdAfter)}`);
  if (q.createdBefore) where.push(`created_at < ${param(q.createdBefore)}`);
  if (q.after) where.push(`(created_at, id) < (${param(q.after.createdAt)}::timestamptz, ${param(q.after.id)}::int8)`);
  const filter = where.length ? `and ${where.join(" and ")}` : "";
  const limit = param(q.limit);
  // The output column "id" is text, so ordering uses the numeric id_order (a bare "id" would sort as text).
  const { rows } = await db.query<TaskRow>(
    `(select ${ACTIVE_COLUMNS}, tasks.id as id_order
      from taskq.tasks where status in ('running', 'cancelling') ${filter}
      order by created_at desc, tasks.id desc limit ${limit})
     union all
     (select ${HISTORY_COLUMNS}, history.id as id_order
      from taskq.history where true ${filter}
      order by created_at desc, history.id desc limit ${limit})
     order by created_at desc, id_order desc limit ${limit}`,
    values,
  );
  return rows.map(taskFromRow);
}
