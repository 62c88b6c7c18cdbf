-- taskq schema, version 4: cron schedules.
--
-- schedules      one row per schedule, from config, from a worker's hello, or built in. next_run_at is
--                the next tick to fire; a tick missed while every server was down stays due, and fires
--                once when a server is back, then next_run_at moves past now.
-- schedule_runs  one row per fired tick: the primary key (schedule, tick) makes each tick fire once,
--                whichever replicas try.

create table taskq.schedules (
  name         text primary key,
  cron         text not null,
  time_zone    text not null,
  type         text not null,
  queue        text not null,
  params       jsonb not null default '{}',
  title        text not null default '',
  priority     integer not null default 0,
  source       text not null check (source in ('config', 'worker', 'builtin')),
  next_run_at  timestamptz not null,
  last_run_at  timestamptz,
  last_task_id bigint,
  updated_at   timestamptz not null
);

create index schedules_next_run_idx on taskq.schedules (next_run_at);

create table taskq.schedule_runs (
  schedule text not null,
  tick     timestamptz not null,
  task_id  bigint not null,
  primary key (schedule, tick)
);
