-- taskq schema, version 3: queue state shared by every replica.
--
-- queues       one row per queue that has ever been paused: whether it is paused now. Queue limits
--              (max_workers, global_max_workers) come from each replica's config; what must be the
--              same everywhere at every moment (paused or not) lives here.

create table taskq.queues (
  name       text primary key,
  paused     boolean not null default false,
  changed_at timestamptz not null
);

-- Counting what runs per queue, for queue limits, reads only running and cancelling rows.
create index tasks_running_queue_idx on taskq.tasks (queue) where status <> 'pending';
