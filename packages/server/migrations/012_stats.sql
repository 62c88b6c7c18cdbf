-- taskq schema, version 12: what the dashboard charts and status tabs read.
--
-- queue_stats  one row per queue per sampling time (stats_interval, a minute by default): the queue's
--              pending and running tasks then, and how many of its tasks finished in each final status
--              since the sample before, counted from history by finished_at. Whichever replica's turn
--              comes first writes a sample, under an advisory lock, so replicas never write the same
--              window twice; rows older than a day are deleted as new ones are written.
-- history_unsuccessful_idx
--              counts of failed, canceled and stuck tasks (the status tabs) without reading the completed
--              ones, which are nearly all of history. Completed tasks are not in it, so the hot path
--              (archiving a completed task) pays nothing for it.
create table taskq.queue_stats (
  at        timestamptz not null,
  queue     text not null,
  pending   integer not null,
  running   integer not null,
  completed integer not null,
  failed    integer not null,
  canceled  integer not null,
  stuck     integer not null,
  primary key (at, queue)
);

create index history_unsuccessful_idx on taskq.history (status, created_at) where status <> 'completed';
