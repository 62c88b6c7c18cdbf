/** Statements that lease tasks to worker sessions and end those leases. */
import type {
  FinishedAs,
  FinishInput,
  LeasedTask,
  LeaseGroup,
  LeaseTimeouts,
  QueueLimits,
  ReleaseInput,
  WakeOnFree,
} from "../types.js";
import { archiveCtes } from "./archive.js";
import { changeAppendSql } from "./changes.js";
import { CHANNEL_DISPATCH, CHANNEL_TASK, dueNotifySql, tasksChangedNotifySql, type Db } from "./db.js";
import { retryDelayMsSql } from "./retry.js";

/**
 * Leases pending, due tasks to every group in one statement. Each group takes up to one task per
 * slot in claim order (priority desc, next_try_at, id); `for update skip locked` keeps concurrent
 * claimers (other replicas) off the rows this one took. A task that two overlapping groups picked goes
 * to the first group only, so a slot may stay empty; the caller claims again while credits remain.
 * Each lease gets a fresh token, counts an attempt, records its session (so recovery can find it),
 * and sets its deadline from the first timeout that applies: the task's own, the type's as the
 * session's worker declared it, the type's from config, the queue's, the server default. Each carries
 * the trace context stored with its task (null for an untraced task).
 *
 * Paused queues are skipped. Queue limits: tasks running or cancelling count against their queue's
 * max_workers and against global_max_workers; full queues are skipped and the picks are cut to what
 * is free. The counts are only right if no other claimer commits meanwhile, so with limits the caller
 * runs this in a transaction that first takes queueLimitLocksTake; without them, claimers never wait.
 *
 * `excludeQueues` leaves those queues' tasks alone: a caller that knows no limited queue has work
 * claims the rest without the limit locks.
 *
 * Locking choice: SKIP LOCKED over a status-flip retry loop, because claimers never wait on each other
 * for rows. Each of a group's types is read on its own from the partial index tasks_claim_type_idx
 * (type, then claim order), up to the group's slots, and the first of those in claim order are
 * taken: a backlog of another type, however large or however urgent, is never on the way. The rows a
 * type read but the group did not take stay locked until the statement commits, so a concurrent
 * claimer skips them this once.
 */
export async function taskLeaseAvailable(
  db: Db,
  groups: LeaseGroup[],
  opts: { timeouts: LeaseTimeouts; limits: QueueLimits; excludeQueues?: string[] },
  now: Date,
): Promise<LeasedTask[]> {
  const { timeouts, limits } = opts;
  const { rows } = await db.query<LeasedRow>({
    name: "taskLeaseAvailable",
    text: `
      with groups as (
        select g.ord, g.types, g.queues, g.slots
        from jsonb_to_recordset($1::jsonb) as g(ord int4, types text[], queues text[], slots uuid[])
      ),
      running as (
        select queue, count(*)::int4 as n from taskq.tasks
        where status <> 'pending' and ($7::int4 is not null or queue in (select jsonb_object_keys($6::jsonb)))
        group by queue
      ),
      queue_free as (
        select l.key as queue, greatest(0, l.value::int4 - coalesce(r.n, 0)) as n
        from jsonb_each_text($6::jsonb) l left join running r on r.queue = l.key
      ),
      global_free as (
        select greatest(0, $7::int4 - (select coalesce(sum(n), 0) from running))::int4 as n where $7::int4 is not null
      ),
      candidates as (
        select distinct on (c.id) c.id, c.queue, c.priority, c.next_try_at, g.slots[c.rn] as session_id
        from groups g
        cross join lateral (
          select s.*, row_number() over (order by s.priority desc, s.next_try_at, s.id) as rn
          from (
            select t.* from unnest(g.types) as gt(type)
            cross join lateral (
              select t.id, t.queue, t.priority, t.next_try_at
              from taskq.tasks t
              where t.status = 'pending' and t.type = gt.type and t.next_try_at <= $2
                and (g.queues is null or t.queue = any(g.queues))
                and not exists (select 1 from queue_free f where f.queue = t.queue and f.n = 0)
                and not exists (select 1 from taskq.queues q where q.name = t.queue and q.paused)
                and ($8::text[] is null or t.queue <> all($8::text[]))
                and coalesce((select n from global_free), 1) > 0
              order by t.priority desc, t.next_try_at, t.id
              limit cardinality(g.slots)
              for update skip locked
            ) t
            order by t.priority desc, t.next_try_at, t.id
            limit cardinality(g.slots)
          ) s
        ) c
        order by c.id, g.ord
      ),
      picked as (
        select c.id, c.session_id
        from (
          select c.*,
                 row_number() over (partition by c.queue order by c.priority desc, c.next_try_at, c.id) as queue_rank,
                 row_number() over (order by c.priority desc, c.next_try_at, c.id) as global_rank
          from candidates c
        ) c
        left join queue_free f on f.queue = c.queue
        where (f.n is null or c.queue_rank <= f.n)
          and (not exists (select 1 from global_free) or c.global_rank <= (select n from global_free))
      ),
      leased as (
        select p.id, p.session_id, ws.worker_name, ws.replica_id,
               coalesce(t.timeout_ms, (ws.type_timeouts ->> t.type)::int8, ($3::jsonb ->> t.type)::int8,
                        ($4::jsonb ->> t.queue)::int8, $5::int8) as effective_timeout_ms
        from picked p
        join taskq.tasks t on t.id = p.id
        join taskq.worker_sessions ws on ws.id = p.session_id
      ),
      updated as (
        update taskq.tasks t
        set status = 'running', attempts = t.attempts + 1, started_at = $2, lease_token = gen_random_uuid(),
            session_id = l.session_id, worker = l.worker_name,
            deadline_at = $2 + make_interval(secs => l.effective_timeout_ms / 1000.0),
            status_changes = ${changeAppendSql("t.status_changes", { status: "'running'::text", attempts: "t.attempts + 1", worker: "l.worker_name", at: "$2", seq: "t.log_seq", replica: "l.replica_id" })}
        from leased l
        where t.id = l.id
        returning t.id::text, t.lease_token::text, t.session_id::text, t.type, t.queue, t.params::text as params_json, t.attempts,
                  t.max_attempts, l.effective_timeout_ms::float8 as timeout_ms, ${epochMsSql("t.deadline_at")} as deadline_ms, t.title,
                  t.idempotency_key, ${epochMsSql("t.created_at")} as created_ms, t.priority, ${epochMsSql("t.next_try_at")} as due_ms,
                  t.trace_parent, t.trace_state, t.concurrency_key
      )
      select u.*, ${tasksChangedNotifySql("updated")} as notified
      from updated u`,
    values: [
      JSON.stringify(groups.map((g, ord) => ({ ord, ...g }))),
      now,
      JSON.stringify(timeouts.types),
      JSON.stringify(timeouts.queues),
      timeouts.defaultMs,
      JSON.stringify(limits.queues),
      limits.global,
      opts.excludeQueues ?? null,
    ],
  });
  rows.sort((a, b) => b.priority - a.priority || a.due_ms - b.due_ms || Number(a.id) - Number(b.id));
  return rows.map(leasedFromRow);
}

/**
 * A timestamp as whole epoch milliseconds, as a Date holds it: the driver parses a timestamp's text
 * with a regular expression into a Date (3 % of the server's profile in (a) for the lease's three); a
 * number costs it a parseFloat.
 */
const epochMsSql = (column: string) => `floor(extract(epoch from ${column}) * 1000)::float8`;

interface LeasedRow {
  id: string;
  lease_token: string;
  session_id: string;
  type: string;
  queue: string;
  /** The params as JSON text: parsed here, so its length is known for free. */
  params_json: string;
  attempts: number;
  max_attempts: number;
  timeout_ms: number;
  deadline_ms: number;
  title: string;
  idempotency_key: string | null;
  concurrency_key: string | null;
  created_ms: number;
  priority: number;
  due_ms: number;
  trace_parent: string | null;
  trace_state: string | null;
}

const leasedFromRow = (r: LeasedRow): LeasedTask => ({
  id: r.id,
  leaseToken: r.lease_token,
  sessionId: r.session_id,
  type: r.type,
  queue: r.queue,
  params: JSON.parse(r.params_json) as LeasedTask["params"],
  paramsJsonLength: r.params_json.length,
  attempt: r.attempts,
  maxAttempts: r.max_attempts,
  timeoutMs: r.timeout_ms,
  deadlineAt: new Date(r.deadline_ms),
  title: r.title,
  idempotencyKey: r.idempotency_key,
  concurrencyKey: r.concurrency_key,
  createdAtMs: r.created_ms,
  dueAtMs: r.due_ms,
  trace: r.trace_parent === null ? null : { parent: r.trace_parent, state: r.trace_state },
});

/** When the earliest pending task of these types becomes due, if any is scheduled after `now`. */
export async function taskNextDueAt(db: Db, types: string[], now: Date): Promise<Date | null> {
  const { rows } = await db.query<{ at: Date | null }>({
    name: "taskNextDueAt",
    text: `select min(d.at) as at from unnest($1::text[]) as ty(type)
           cross join lateral (
             select t.next_try_at as at from taskq.tasks t
             where t.status = 'pending' and t.type = ty.type and t.next_try_at > $2
             order by t.next_try_at limit 1
           ) d`,
    values: [types, now],
  });
  return rows[0]?.at ?? null;
}

/**
 * The FROM clause that finds, locked, the live leases that the rows of an `input` CTE (id, token)
 * name. Each is looked up by primary key whatever stale statistics say about how many tasks run
 * (believing "none", the planner would rather walk every running task once per input row): the
 * lateral subquery is a nested loop, and "offset 0" keeps the status test out of it, so the partial
 * index of running tasks cannot be chosen instead. A matching token alone means the lease is live.
 */
const HELD_TASKS = `from input i
        cross join lateral (select * from taskq.tasks t where t.id = i.id and t.lease_token = i.token offset 0 for update) t
        where t.status in ('running', 'cancelling')`;

/**
 * Records many finishes in one statement. A finish counts only if its token still holds the lease of a
 * running or cancelling task; any other finish changes nothing and is absent from the result. The row
 * lock plus the token check make a second finish of the same lease (a duplicate, or one racing lease
 * recovery) a no-op, so every outcome is recorded once.
 *
 * Where the task goes: cancelling → canceled whatever the outcome; success → completed; failure →
 * failed; retry → pending after the delay while attempts remain, else failed.
 */
export async function taskFinishMany(
  db: Db,
  finishes: FinishInput[],
  now: Date,
  wakeOnFree: WakeOnFree = [],
): Promise<Map<string, FinishedAs>> {
  const { rows } = await db.query<{ id: string; final_status: FinishedAs }>({
    name: "taskFinishMany",
    text: `
      with input as (
        select * from unnest($1::int8[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::int8[])
          as i(id, token, kind, result, error, delay_ms)
      ),
      source as (
        select t.id, t.queue, i.result,
          -- A cancelling task keeps the interrupt's reason as its error.
          case when t.status = 'cancelling' then t.error else nullif(i.error, '') end as final_error,
          case when t.status = 'cancelling' then 'canceled'
               when i.kind = 'success' then 'completed'
               when i.kind = 'failure' then 'failed'
               when t.attempts >= t.max_attempts then 'failed'
               else 'pending' end as final_status,
          coalesce(i.delay_ms, ${retryDelayMsSql("t")}) as delay_ms, 'finish'::text as ended_by
        ${HELD_TASKS}
      ),
      retried as (
        update taskq.tasks t
        set status = 'pending', next_try_at = $7::timestamptz + make_interval(secs => s.delay_ms / 1000.0),
            lease_token = null, session_id = null, deadline_at = null, error = coalesce(s.final_error, ''),
            status_changes = ${changeAppendSql("t.status_changes", { status: "'pending'::text", attempts: "t.attempts", error: "coalesce(s.final_error, '')", at: "$7", seq: "t.log_seq", ended: "'finish'" })}
        from source s where t.id = s.id and s.final_status = 'pending'
        returning t.id, t.next_try_at
      ),
      ${archiveCtes("source", "$7")}
      select s.id::text, s.final_status,
             (select pg_notify('${CHANNEL_TASK}', string_agg(id::text, ',')) from source) as notified,
             ${dueNotifySql("retried")} as due,
             ${wakeOnFreeSql("$8")} as woke
      from source s`,
    values: [
      finishes.map((f) => f.id),
      finishes.map((f) => f.leaseToken),
      finishes.map((f) => f.outcome.kind),
      finishes.map((f) => (f.outcome.kind === "success" ? JSON.stringify(f.outcome.result) : null)),
      finishes.map((f) => (f.outcome.kind === "success" ? null : f.outcome.error)),
      finishes.map((f) => (f.outcome.kind === "retry" ? f.outcome.delayMs : null)),
      now,
      wakeOnFree,
    ],
  });
  return new Map(rows.map((r) => [r.id, r.final_status]));
}

/** A select-list expression that notifies the dispatchers when `source` freed a slot in `param`'s queues. */
export const wakeOnFreeSql = (param: string) =>
  `(select pg_notify('${CHANNEL_DISPATCH}', '') from source s where ${param}::text[] is null or s.queue = any(${param}::text[]) limit 1)`;

/**
 * How leases came to be released: their worker or session was "lost" (the attempt counts); or, giving
 * the attempt back, the server shut down, the worker "declined" them unrun or its handler "snoozed"
 * them, or they were "undelivered" (claimed for a session that closed before they reached its worker).
 */
export type ReleaseHow = "lost" | "shutdown" | "declined" | "snoozed" | "undelivered";

/**
 * Ends leases whose worker is gone or gave them back. An attempt lost with its worker stands: the task
 * returns to pending at once while attempts remain, else ends STUCK. Any other release gives the attempt
 * back. A cancelling task ends CANCELED. Guarded by token like a finish, so a task that finished
 * meanwhile is untouched. Wakes the dispatchers when anything went back to pending.
 */
export async function taskLeaseRelease(
  db: Db,
  leases: ReleaseInput[],
  opts: { how: ReleaseHow; error: string; wakeOnFree?: WakeOnFree; delayMs?: number },
  now: Date,
): Promise<Map<string, FinishedAs>> {
  const { rows } = await db.query<{ id: string; final_status: FinishedAs }>({
    name: "taskLeaseRelease",
    text: `
      with input as (
        select * from unnest($1::int8[], $2::uuid[]) as i(id, token)
      ),
      source as (
        select t.id, t.queue, null::jsonb as result,
          case when t.status = 'cancelling' then t.error else $4::text end as final_error,
          case when t.status = 'cancelling' then 'canceled'
               when $3 then 'pending'
               when t.attempts >= t.max_attempts then 'stuck'
               else 'pending' end as final_status,
          $7::text as ended_by
        ${HELD_TASKS}
      ),
      returned as (
        update taskq.tasks t
        set status = 'pending', next_try_at = $5::timestamptz + make_interval(secs => $8 / 1000.0),
            lease_token = null, session_id = null, deadline_at = null,
            attempts = case when $3 then t.attempts - 1 else t.attempts end,
            started_at = case when $3 then null else t.started_at end,
            error = case when $3 then t.error else $4 end,
            status_changes = ${changeAppendSql("t.status_changes", {
              status: "'pending'::text",
              attempts: "case when $3 then t.attempts - 1 else t.attempts end",
              error: "case when $3 then '' else $4 end",
              at: "$5",
              seq: "t.log_seq",
              ended: "$7::text",
            })}
        from source s where t.id = s.id and s.final_status = 'pending'
        returning t.id, t.next_try_at
      ),
      ${archiveCtes("source", "$5")}
      select s.id::text, s.final_status,
             (select pg_notify('${CHANNEL_TASK}', string_agg(id::text, ',')) from source) as notified,
             (select pg_notify('${CHANNEL_DISPATCH}', '') from returned where next_try_at <= $5 limit 1) as woke,
             ${dueNotifySql("(select * from returned where next_try_at > $5) later")} as due,
             ${wakeOnFreeSql("$6")} as woke_freed
      from source s`,
    values: [
      leases.map((l) => l.id),
      leases.map((l) => l.leaseToken),
      opts.how !== "lost",
      opts.error,
      now,
      opts.wakeOnFree ?? [],
      opts.how,
      opts.delayMs ?? 0,
    ],
  });
  return new Map(rows.map((r) => [r.id, r.final_status]));
}
