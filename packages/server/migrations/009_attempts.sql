-- taskq schema, version 9: what is needed to tell a task's attempts apart, at no extra statement.
--
-- status_changes entries (migration 008) gain two optional keys:
--   "r"  on a running change: the replica holding the worker's session.
--   "o"  on a pending change that ended an attempt: how it ended ("finish": the worker reported a failed
--        attempt; "timeout"; "lost": its worker or session was lost; "shutdown", "declined",
--        "undelivered": given back without counting).
-- history.ended_by: how the final change came about, with the same words plus "interrupt" (a pending
--        task interrupted); "" for rows archived before this version.
alter table taskq.history add column ended_by text not null default '';
