-- taskq schema, version 1.
--
-- tasks        the hot queue: active rows only (pending, running, cancelling). Finished tasks move to
--              history in the same statement that finishes them, so this table stays small.
-- history      every task that reached a final status, keyed by the same id.
-- task_log     the append-only log of every task, keyed by (task_id, seq); it outlives the queue row.
-- idempotency_keys
--              one row per key ever used, so a key maps to one task whether it is active or finished.
-- worker_sessions
--              one row per connected worker stream; the server replica holding it heartbeats it.

create sequence taskq.task_id_seq;

create table taskq.tasks (
  id              bigint primary key default nextval('taskq.task_id_seq'),
  type            text not null,
  queue           text not null,
  status          text not null check (status in ('pending', 'running', 'cancelling')),
  priority        integer not null default 0,
  params          jsonb not null default '{}',
  title           text not null default '',
  origin          text not null default 'user' check (origin in ('user', 'system')),
  initiator       text not null default '',
  node_id         text not null default '',
  idempotency_key text,
  attempts        integer not null default 0,
  max_attempts    integer not null check (max_attempts > 0),
  retry_delay_ms  bigint not null check (retry_delay_ms >= 0),
  retry_backoff   text not null default 'fixed' check (retry_backoff in ('fixed', 'exponential')),
  timeout_ms      bigint check (timeout_ms > 0),
  created_at      timestamptz not null,
  next_try_at     timestamptz not null,
  started_at      timestamptz,
  lease_token     uuid,
  session_id      uuid,
  worker          text not null default '',
  status_values   jsonb not null default '{}',
  log_seq         bigint not null default 0,
  error           text not null default ''
);

-- The claim order: priority desc, then next_try_at, then id, over pending rows only.
create index tasks_claim_idx on taskq.tasks (priority desc, next_try_at, id) where status = 'pending';
create index tasks_session_idx on taskq.tasks (session_id) where session_id is not null;
create index tasks_created_idx on taskq.tasks (created_at, id);

create table taskq.history (
  id              bigint primary key,
  type            text not null,
  queue           text not null,
  status          text not null check (status in ('completed', 'failed', 'canceled', 'stuck')),
  priority        integer not null,
  params          jsonb not null,
  title           text not null,
  origin          text not null,
  initiator       text not null,
  node_id         text not null,
  idempotency_key text,
  attempts        integer not null,
  max_attempts    integer not null,
  retry_delay_ms  bigint not null,
  retry_backoff   text not null,
  timeout_ms      bigint,
  created_at      timestamptz not null,
  started_at      timestamptz,
  finished_at     timestamptz not null,
  worker          text not null,
  status_values   jsonb not null,
  log_seq         bigint not null,
  result          jsonb,
  error           text not null
);

create index history_created_idx on taskq.history (created_at desc, id desc);
create index history_finished_idx on taskq.history (finished_at);

create table taskq.task_log (
  task_id bigint not null,
  seq     bigint not null,
  attempt integer not null,
  at      timestamptz not null,
  message text not null,
  primary key (task_id, seq)
);

create table taskq.idempotency_keys (
  key        text primary key,
  task_id    bigint not null,
  created_at timestamptz not null
);

create table taskq.worker_sessions (
  id           uuid primary key,
  replica_id   uuid not null,
  worker_name  text not null,
  task_types   text[] not null,
  queues       text[] not null,
  connected_at timestamptz not null,
  heartbeat_at timestamptz not null
);

create index worker_sessions_replica_idx on taskq.worker_sessions (replica_id);

-- New tasks wake the lease dispatchers of every replica: one notification per inserting statement.
create function taskq.notify_dispatch() returns trigger language plpgsql as $$
begin
  perform pg_notify('taskq_dispatch', '');
  return null;
end
$$;

create trigger tasks_notify_dispatch after insert on taskq.tasks
  for each statement execute function taskq.notify_dispatch();
