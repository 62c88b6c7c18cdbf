-- New tasks' notification names their queues ("default,video"), so a dispatcher knows whether a
-- queue with a worker limit got work: claims that cannot reach one skip the limit locks.
-- Other wake-ups (tasks back in the queue, a freed slot) still send an empty payload: "any queue".
create or replace function taskq.notify_dispatch() returns trigger language plpgsql as $$
begin
  perform pg_notify('taskq_dispatch', coalesce((select string_agg(distinct queue, ',') from inserted), ''));
  return null;
end
$$;

drop trigger tasks_notify_dispatch on taskq.tasks;
create trigger tasks_notify_dispatch after insert on taskq.tasks
  referencing new table as inserted
  for each statement execute function taskq.notify_dispatch();
