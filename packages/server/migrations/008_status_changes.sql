-- taskq schema, version 8: every status change kept with its task.
--
-- tasks.status_changes / history.status_changes
--              the task's status changes since it was created, oldest first, appended by the statement
--              that makes each change: {"s": status, "a": attempts, "w": worker (while held), "e": error,
--              "at": epoch ms, "q": the task's log_seq at that moment}. A watcher that reads the task after
--              several changes still reports each of them, in order with the log steps ("q" places a
--              change among them). One small array on the row: no row of its own per change. The final
--              change is not in it: the history row's own columns (status, finished_at, ...) are that.
alter table taskq.tasks add column status_changes jsonb not null default '[]';
alter table taskq.history add column status_changes jsonb not null default '[]';
