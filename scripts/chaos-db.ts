/**
 * The chaos run's own tables in the chaos database (public schema, beside taskq's), and the one clock
 * everything is measured on.
 *
 *   chaos_effects       one row per completed side effect (a handler's attempt), as before
 *   chaos_runs          one row per execution of a handler: task, attempt, worker process, start, end,
 *                       and whether and why its signal aborted (written by scripts/chaos-worker.ts)
 *   chaos_lease_events  written by a trigger of the run's own on taskq.tasks: `leased` when a row gets a
 *                       lease token, `ended` when it loses one (finished, released, recovered, retried),
 *                       `final` when the row is deleted (archived into taskq.history); each stamped with
 *                       clock_timestamp(), the moment the statement changed the row
 *
 * Times: the trigger stamps the database's clock. A run's start and end are its worker's Date.now(),
 * taken when the handler is called and when it returns; workers run on the database's host without a
 * shifted clock, and `clockAgrees` proves at start that their Date.now() is the clock clock_timestamp()
 * reads (a read of clock_timestamp() falls between two reads of Date.now()). Only the replicas' clocks
 * are shifted (libfaketime), and nothing here is measured on them.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type pg from "pg";

/** Tables that exist before taskq's schema does (created before the first replica starts). */
export async function chaosTablesCreate(db: pg.Pool): Promise<void> {
  await db.query(`
    create table chaos_effects (id bigserial primary key, task_id bigint not null, attempt int not null, worker text not null,
      at timestamptz not null default now());
    create table chaos_runs (
      id           uuid primary key,
      task_id      bigint not null,
      attempt      int not null,
      kind         text not null,
      worker       text not null,
      pid          int not null,
      started_at   timestamptz not null,
      recorded_at  timestamptz not null default clock_timestamp(),
      ended_at     timestamptz,
      end_kind     text check (end_kind in ('returned', 'threw', 'aborted', 'snoozed')),
      aborted_at   timestamptz,
      abort_reason text
    );
    create table chaos_lease_events (
      seq       bigserial primary key,
      task_id   bigint not null,
      event     text not null check (event in ('leased', 'ended', 'final')),
      attempt   int,
      token     uuid,
      worker    text,
      engine_at timestamptz,
      at        timestamptz not null default clock_timestamp()
    );`);
}

/**
 * The lease trigger, on taskq.tasks: installed once the first replica has migrated the schema, before
 * any worker connects or any task is dispatched, so it sees every lease. `engine_at` of a `leased`
 * event is tasks.started_at as the leasing replica wrote it: its clock, for the skew figures.
 */
export async function leaseTriggerInstall(db: pg.Pool): Promise<void> {
  await db.query(`
    create function public.chaos_lease_event() returns trigger language plpgsql as $$
    begin
      if old.lease_token is not null then
        insert into public.chaos_lease_events (task_id, event, attempt, token, worker)
        values (old.id, 'ended', old.attempts, old.lease_token, old.worker);
      end if;
      if tg_op = 'DELETE' then
        insert into public.chaos_lease_events (task_id, event) values (old.id, 'final');
      elsif new.lease_token is not null then
        insert into public.chaos_lease_events (task_id, event, attempt, token, worker, engine_at)
        values (new.id, 'leased', new.attempts, new.lease_token, new.worker, new.started_at);
      end if;
      return null;
    end
    $$;
    create trigger chaos_lease_change after update on taskq.tasks
      for each row when (old.lease_token is distinct from new.lease_token) execute function public.chaos_lease_event();
    create trigger chaos_task_final after delete on taskq.tasks
      for each row execute function public.chaos_lease_event();`);
}

/** Two reads of this process's Date.now() around one read of the database's clock_timestamp(), in ms. */
export interface ClockReading {
  before: number;
  db: number;
  after: number;
}

export async function clockRead(db: Pick<pg.Pool, "query">): Promise<ClockReading> {
  const before = Date.now();
  const { rows } = await db.query<{ ms: number }>("select extract(epoch from clock_timestamp())::float8 * 1000 as ms");
  return { before, db: rows[0].ms, after: Date.now() };
}

/**
 * Whether this process's Date.now() is the clock clock_timestamp() reads: the database's read must fall
 * between the two reads of Date.now() (whole milliseconds, so within [before, after + 1)). Any skew at
 * all, even a few milliseconds, fails this whatever the load; the same clock never does.
 */
export const clockAgrees = (r: ClockReading) => r.db >= r.before && r.db < r.after + 1;

/** Writes the chaos tables and the finished tasks into `dir`, a JSON object per line (CHAOS_DUMP). */
export async function chaosTablesDump(db: pg.Pool, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tables: Record<string, string> = {
    chaos_runs: "select * from chaos_runs order by started_at",
    chaos_lease_events: "select * from chaos_lease_events order by seq",
    chaos_effects: "select * from chaos_effects order by id",
    history: "select id, type, status, attempts, worker, started_at, finished_at, error from taskq.history order by id",
  };
  for (const [name, sql] of Object.entries(tables)) {
    const { rows } = await db.query(sql);
    await writeFile(path.join(dir, `${name}.jsonl`), `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
  }
}
