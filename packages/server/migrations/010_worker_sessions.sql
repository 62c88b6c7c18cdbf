-- taskq schema, version 10: what ListWorkers shows of a worker session besides its hello, written by
-- the replica's session heartbeat (every heartbeat interval, one statement for all its sessions).
--
-- concurrency  Hello.concurrency, as the worker declared it (informational).
-- credits      the credits the session held at its replica's last heartbeat.
-- heard_at     when the worker last sent anything, as of that heartbeat (null before the first).
alter table taskq.worker_sessions
  add column concurrency integer not null default 0,
  add column credits integer not null default 0,
  add column heard_at timestamptz;
