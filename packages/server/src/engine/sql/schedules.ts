/** Statements about schedules: declaring them, finding the due ones, firing a tick, listing. */
import type { DueSchedule, JsonObject, ScheduleDef, ScheduleRow, ScheduleSource, TaskStatus } from "../types.js";
import { CHANNEL_SCHEDULE, type Db } from "./db.js";

/**
 * Declares schedules (insert, or update their definitions). A schedule whose cron or time zone did not
 * change keeps its next_run_at, so a tick missed while every server was down is still due; a new or
 * changed one starts at its next tick after now. Tells every replica's scheduler to plan again.
 *
 * A worker's schedule never replaces a config or built-in one of the same name: those are left as they
 * are, and their names are returned.
 */
export async function scheduleUpsertMany(db: Db, defs: { def: ScheduleDef; nextRunAt: Date }[], now: Date): Promise<string[]> {
  if (defs.length === 0) return [];
  const { rows } = await db.query<{ kept: string[] }>({
    name: "scheduleUpsertMany",
    text: `
      with input as (
        select * from jsonb_to_recordset($1::jsonb) as i(name text, cron text, time_zone text, type text, queue text,
          params jsonb, title text, priority int4, source text, next_run_at timestamptz)
      ),
      upserted as (
        insert into taskq.schedules (name, cron, time_zone, type, queue, params, title, priority, source, next_run_at, updated_at)
        select name, cron, time_zone, type, queue, params, title, priority, source, next_run_at, $2 from input
        on conflict (name) do update set
          cron = excluded.cron, time_zone = excluded.time_zone, type = excluded.type, queue = excluded.queue,
          params = excluded.params, title = excluded.title, priority = excluded.priority, source = excluded.source,
          updated_at = excluded.updated_at,
          next_run_at = case when (schedules.cron, schedules.time_zone) is distinct from (excluded.cron, excluded.time_zone)
                             then excluded.next_run_at else schedules.next_run_at end
        where excluded.source <> 'worker' or schedules.source = 'worker'
        returning name
      )
      select (select pg_notify('${CHANNEL_SCHEDULE}', '') from (select 1 from upserted limit 1) u) as notified,
             array(select i.name from input i where not exists (select 1 from upserted u where u.name = i.name)) as kept`,
    values: [
      JSON.stringify(
        defs.map(({ def, nextRunAt }) => ({
          name: def.name,
          cron: def.cron,
          time_zone: def.timeZone,
          type: def.type,
          queue: def.queue,
          params: def.params,
          title: def.title,
          priority: def.priority,
          source: def.source,
          next_run_at: nextRunAt.toISOString(),
        })),
      ),
      now,
    ],
  });
  return rows[0].kept;
}

/**
 * Deletes the schedules of a source whose names are not in `keep` (a schedule removed from the config,
 * or built-in ones turned off). Their past runs stay in history.
 */
export async function scheduleDeleteMissing(db: Db, source: ScheduleSource, keep: string[]): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>({
    name: "scheduleDeleteMissing",
    text: "delete from taskq.schedules where source = $1 and name <> all($2::text[]) returning name",
    values: [source, keep],
  });
  return rows.map((r) => r.name);
}

/** The schedules whose next tick is due, and when the earliest of the others falls. */
export async function scheduleDueList(db: Db, now: Date): Promise<{ due: string[]; nextAt: Date | null }> {
  const { rows } = await db.query<{ name: string | null; next_at: Date | null }>({
    name: "scheduleDueList",
    text: `select name, null::timestamptz as next_at from taskq.schedules where next_run_at <= $1
           union all
           select null, min(next_run_at) from taskq.schedules where next_run_at > $1`,
    values: [now],
  });
  return { due: rows.flatMap((r) => (r.name ? [r.name] : [])), nextAt: rows.find((r) => r.name === null)?.next_at ?? null };
}

/**
 * Locks one due schedule for firing, or returns null when it is not due or another replica holds it.
 * Call inside a transaction; finish with scheduleTickRecord.
 */
export async function scheduleLockDue(db: Db, name: string, now: Date): Promise<DueSchedule | null> {
  const { rows } = await db.query<ScheduleDbRow & { previous_active: boolean; worker_connected: boolean }>({
    name: "scheduleLockDue",
    text: `select s.*, exists (select 1 from taskq.tasks t where t.id = s.last_task_id) as previous_active,
                  exists (select 1 from taskq.worker_sessions w where s.type = any(w.task_types)) as worker_connected
           from taskq.schedules s where s.name = $1 and s.next_run_at <= $2
           for update of s skip locked`,
    values: [name, now],
  });
  const r = rows[0];
  return r ? { ...scheduleDefFromRow(r), tick: r.next_run_at, previousActive: r.previous_active, workerConnected: r.worker_connected } : null;
}

/** A row of taskq.schedules as pg returns it. */
interface ScheduleDbRow {
  name: string;
  cron: string;
  time_zone: string;
  type: string;
  queue: string;
  params: JsonObject;
  title: string;
  priority: number;
  source: ScheduleSource;
  next_run_at: Date;
  last_run_at: Date | null;
  last_task_id: string | null;
}

const scheduleDefFromRow = (r: ScheduleDbRow): ScheduleDef => ({
  name: r.name,
  cron: r.cron,
  timeZone: r.time_zone,
  type: r.type,
  queue: r.queue,
  params: r.params,
  title: r.title,
  priority: r.priority,
  source: r.source,
});

/**
 * Records a handled tick: with a task, the run (unique per schedule and tick) and the schedule's last
 * run; either way, the schedule's next tick. Returns false when that tick already had a run.
 */
export async function scheduleTickRecord(
  db: Db,
  p: { name: string; tick: Date; taskId: string | null; nextRunAt: Date },
): Promise<boolean> {
  const { rows } = await db.query<{ recorded: boolean }>({
    name: "scheduleTickRecord",
    text: `
      with run as (
        insert into taskq.schedule_runs (schedule, tick, task_id)
        select $1, $2, $3::int8 where $3::int8 is not null
        on conflict do nothing
        returning task_id
      ),
      advanced as (
        update taskq.schedules s
        set next_run_at = $4,
            last_run_at = case when exists (select 1 from run) then $2 else s.last_run_at end,
            last_task_id = coalesce((select task_id from run), s.last_task_id)
        where s.name = $1
        returning 1
      )
      select $3::int8 is null or exists (select 1 from run) as recorded from advanced`,
    values: [p.name, p.tick, p.taskId, p.nextRunAt],
  });
  return rows[0]?.recorded ?? false;
}

/** Every schedule by name, with its next and last run and the last run's status. */
export async function scheduleList(db: Db): Promise<ScheduleRow[]> {
  const { rows } = await db.query<ScheduleDbRow & { last_status: TaskStatus | null }>({
    name: "scheduleList",
    text: `
      select s.*, s.last_task_id::text as last_task_id,
             coalesce(t.status, h.status) as last_status
      from taskq.schedules s
      left join taskq.tasks t on t.id = s.last_task_id
      left join taskq.history h on h.id = s.last_task_id
      order by s.name`,
  });
  return rows.map((r) => ({
    ...scheduleDefFromRow(r),
    nextRunAt: r.next_run_at,
    lastRunAt: r.last_run_at,
    lastTaskId: r.last_task_id,
    lastStatus: r.last_status,
  }));
}
