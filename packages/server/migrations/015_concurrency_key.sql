-- taskq schema, version 15: the concurrency key.
--
-- tasks.concurrency_key / history.concurrency_key
--              the key given at dispatch (DispatchRequest.concurrency_key: whose work this is within its
--              queue, such as a tenant), null when none was given. Kept through retries of attempts,
--              archived with the task, and copied to a retry made from history. No index reads it yet.
--
-- Cost: a nullable text column on each table: nothing beyond the row's null bitmap for a task without
-- a key.
alter table taskq.tasks add column concurrency_key text;
alter table taskq.history add column concurrency_key text;
