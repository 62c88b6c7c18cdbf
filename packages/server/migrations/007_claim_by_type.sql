-- Claims look pending tasks up type by type: a backlog of tasks that no connected worker runs (or of
-- another type with a higher priority) no longer lies on every other type's path through the index.
-- The second index answers "when is the next delayed task of these types due" without a scan.
create index tasks_claim_type_idx on taskq.tasks (type, priority desc, next_try_at, id) where status = 'pending';
create index tasks_due_type_idx on taskq.tasks (type, next_try_at) where status = 'pending';
drop index taskq.tasks_claim_idx;
