-- taskq schema, version 5: indexes the history retention cleanup deletes by.

create index idempotency_keys_task_idx on taskq.idempotency_keys (task_id);
create index schedule_runs_task_idx on taskq.schedule_runs (task_id);
