-- taskq schema, version 2: deadlines and session liveness.
--
-- tasks.deadline_at          while running: when the attempt times out; while cancelling: when the
--                            worker's grace period to stop ends. Null while pending. Any replica's
--                            reaper ends tasks whose deadline has passed.
-- worker_sessions.type_timeouts
--                            the per-type timeouts (ms) the worker declared in its hello, so a lease
--                            computes its deadline in the same statement that grants it.
-- worker_sessions.heartbeat_at is now the database's clock (now()), so replicas whose clocks differ
--                            still agree on which sessions are stale.

alter table taskq.tasks add column deadline_at timestamptz;

create index tasks_deadline_idx on taskq.tasks (deadline_at) where status <> 'pending';

alter table taskq.worker_sessions add column type_timeouts jsonb not null default '{}';

create index worker_sessions_heartbeat_idx on taskq.worker_sessions (heartbeat_at);
