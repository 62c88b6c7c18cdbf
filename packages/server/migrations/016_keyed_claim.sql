-- taskq schema, version 16: claims read keyed and unkeyed tasks from separate indexes.
--
-- tasks_claim_key_idx (type, queue, concurrency_key, claim order), pending keyed tasks only
--              the claim finds which (queue, key) pairs of a type have pending tasks by skipping
--              through it one pair at a time (a loose index scan, one probe per pair), then reads
--              each pair's tasks in claim order. A key's backlog, however large, is read only as far
--              as its turn in one claim takes: it never lies on the way to another key's tasks.
-- tasks_claim_unkeyed_idx (type, claim order), pending tasks without a key
--              the claim order within each type, as tasks_claim_type_idx was, which it replaces.
-- tasks_claim_urgent_idx (type, claim order), pending keyed tasks with a priority above 0
--              finds the keyed tasks at or above their queue's urgent_priority (at least 1), which go
--              before every key's turn, without walking the keys.
--
-- Cost: a pending task is in exactly one of the first two, as it was in tasks_claim_type_idx, and a
-- keyed task with a positive priority also in the third; a lease writes no entry in any of them.
create index tasks_claim_key_idx on taskq.tasks (type, queue, concurrency_key, priority desc, next_try_at, id)
  where status = 'pending' and concurrency_key is not null;
create index tasks_claim_unkeyed_idx on taskq.tasks (type, priority desc, next_try_at, id)
  where status = 'pending' and concurrency_key is null;
create index tasks_claim_urgent_idx on taskq.tasks (type, priority desc, next_try_at, id)
  where status = 'pending' and concurrency_key is not null and priority > 0;
drop index taskq.tasks_claim_type_idx;
