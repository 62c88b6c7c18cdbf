/**
 * The claim: one statement that leases pending, due tasks to every group of worker sessions, with the
 * queues' limits, keys' limits and keys' turns applied.
 */
import type { Claimed, KeyCursors, KeyShares, LeasedTask, LeaseGroup, LeaseTimeouts, QueueLimits } from "../types.js";
import { changeAppendSql } from "./changes.js";
import { tasksChangedNotifySql, type Db } from "./db.js";
import { ratesSql, tokensSql } from "./rates.js";

/**
 * The most (queue, key) pairs of one type a claim visits. A pair with nothing to lease now (its tasks
 * not due, its queue paused or full, its key at max_running_per_key) costs a visit and no turn; past
 * this many visits the claim stops and the next one walks on from there.
 */
const MAX_PAIRS_VISITED = 256;

/**
 * Leases pending, due tasks to every group in one statement. Each group takes up to one task per
 * slot. `for update skip locked` keeps concurrent claimers (other replicas) off the rows this one took.
 * A task that two overlapping groups picked goes to the first group only, so a slot may stay empty; the
 * caller claims again while credits remain. Each lease gets a fresh token, counts an attempt, records
 * its session (so recovery can find it), and sets its deadline from the first timeout that applies: the
 * task's own, the type's as the session's worker declared it, the type's from config, the queue's, the
 * server default. Each carries the trace context stored with its task (null for an untraced task).
 *
 * Which tasks, in what order (fair shares): the tasks of one (queue, concurrency key) pair take turns
 * with every other pair's: a claim gives each pair with due work one task per turn (a key weighted w in
 * key_weights, w tasks), in claim order (priority desc, next_try_at, id) within the pair; unkeyed tasks
 * of a queue take their turn as one more pair. So a key with most of the backlog takes one turn in every
 * round, like any other. Across claims the turns go round: a claim starts after the pair where the last
 * one stopped (`cursors`, kept by the caller). A task whose priority is at least its queue's
 * urgent_priority goes before every turn (keyed ones are found through tasks_claim_urgent_idx).
 *
 * How it reads (no backlog is ever on the way to another's tasks): unkeyed tasks type by type from
 * tasks_claim_unkeyed_idx, up to the group's slots; keyed tasks by walking tasks_claim_key_idx one
 * (queue, key) pair at a time (a loose index scan, one probe per pair), skipping pairs that cannot take
 * a lease now (queue paused, full or excluded, key at its limit, nothing due) before reading any of their
 * tasks, until as many pairs as slots have due work or MAX_PAIRS_VISITED pairs were visited; then each
 * such pair's first tasks in claim order, as many as its share of the slots. The rows read but not taken
 * stay locked until the statement commits, so a concurrent claimer skips them this once.
 *
 * Limits: paused queues are skipped. Tasks running or cancelling count against their queue's
 * max_workers, their (queue, key)'s max_running_per_key and global_max_workers; the picks are cut to
 * what is free, and to the tokens of the queue's and the key's rate-limit buckets, which the statement
 * then draws on (sql/rates.ts). The counts are only right if no other claimer commits meanwhile, so with limits the
 * caller runs this in a transaction that first takes queueLimitLocksTake; without them, claimers never
 * wait. `excludeQueues` leaves those queues' tasks alone: a caller that knows no limited queue has work
 * claims the rest without the limit locks.
 */
export async function taskLeaseAvailable(
  db: Db,
  groups: LeaseGroup[],
  opts: { timeouts: LeaseTimeouts; limits: QueueLimits; shares: KeyShares; cursors: KeyCursors; keyed: boolean; excludeQueues?: string[] },
  now: Date,
): Promise<Claimed> {
  const { timeouts, limits, shares } = opts;
  const shape: ClaimShape = { keys: opts.keyed, rates: Object.keys(limits.rates).length > 0 };
  const { rows } = await db.query<LeasedRow>({
    name: `taskLeaseAvailable${shape.keys ? "Keyed" : ""}${shape.rates ? "Rated" : ""}`,
    text: claimSql(shape),
    values: [
      JSON.stringify(groups.map((g, ord) => ({ ord, ...g }))),
      now,
      JSON.stringify(timeouts.types),
      JSON.stringify(timeouts.queues),
      timeouts.defaultMs,
      JSON.stringify(limits.queues),
      limits.global,
      opts.excludeQueues ?? null,
      JSON.stringify(limits.perKey),
      JSON.stringify(opts.cursors),
      JSON.stringify(shares.weights),
      JSON.stringify(shares.urgentPriority),
      JSON.stringify(limits.rates),
    ],
  });
  const walked = rows[0];
  const leased = rows.filter((r) => r.id !== null);
  leased.sort((a, b) => b.priority - a.priority || a.due_ms - b.due_ms || Number(a.id) - Number(b.id));
  const keyedTypes = walked?.keyed_types ?? groups.flatMap((g) => g.types);
  return {
    leases: leased.map(leasedFromRow),
    cursors: walked ? (JSON.parse(walked.cursors) as KeyCursors) : {},
    // Keyed tasks a claim without the walk did not read are more that may be claimable.
    capped: (walked?.capped ?? false) || (!shape.keys && keyedTypes.length > 0),
    rateWaitMs: walked?.rate_wait_ms ?? null,
    keyedTypes,
  };
}

/**
 * Which parts the claim needs. Without `keys` it reads unkeyed tasks only (and says which types have
 * keyed ones waiting, so the caller claims them with keys next); without `rates` no bucket is read or
 * written. Each shape
 * is a statement of its own: Postgres plans the claim on every call (its custom plans beat the generic
 * one), and the walk over keys multiplies the planning time by five, which a claim of unkeyed tasks
 * would otherwise pay for nothing (BENCHMARKS.md, issue 19).
 */
interface ClaimShape {
  keys: boolean;
  rates: boolean;
}

function claimSql(shape: ClaimShape): string {
  const { keys, rates } = shape;
  const keyTokens = (queue: string, key: string) => (rates ? keyTokensSql(queue, key) : "null::float8");
  const queueOpen = (queue: string, groupQueues: string) =>
    `${queueOpenSql(queue, groupQueues)}${rates ? ` and coalesce((select qt.n from queue_tokens qt where qt.queue = ${queue}), 1) >= 1` : ""}`;
  /** Whether a group may lease a task of this (queue, key) pair of `type` now, checked before any of its tasks is read. */
  const pairUseful = (type: string, queue: string, key: string, groupQueues: string, tokens: string) => `(
    ${queueOpen(queue, groupQueues)}
    and coalesce(${keyFreeSql(queue, key)}, 1) > 0
    and coalesce(${tokens}, 1) >= 1
    and coalesce((select true from taskq.tasks t
                   where t.status = 'pending' and t.concurrency_key is not null and t.type = ${type} and t.queue = ${queue}
                     and t.concurrency_key = ${key} and t.next_try_at <= $2
                   order by t.priority desc, t.next_try_at, t.id limit 1), false))`;
  return `
      with recursive groups as (
        select g.ord, g.types, g.queues, g.slots, cardinality(g.slots) as n_slots
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
      -- Every shape takes the same values: those a shape leaves out are given their types here, unread.
      unread as (select $9::jsonb, $10::jsonb, $11::jsonb, $13::jsonb),
      ${
        rates
          ? `rates as (${ratesSql("$13")}),
      queue_tokens as (
        select ra.queue, ${tokensSql("b", "ra.q_rate", "ra.q_burst", "$2")} as n, ra.q_rate as rate
        from rates ra left join taskq.rate_buckets b on b.queue = ra.queue and b.key = ''
        where ra.q_rate is not null
      ),`
          : ""
      }
      ${
        keys
          ? `key_running as (
        select r.queue, r.concurrency_key as key, count(*)::int4 as n from taskq.tasks r
        where $9::jsonb <> '{}' and r.status <> 'pending' and r.concurrency_key is not null
          and r.queue in (select jsonb_object_keys($9::jsonb))
        group by r.queue, r.concurrency_key
      ),
      pairs(ord, type, queue, key, wrapped, depth, found, useful, tokens) as (
        -- The walk starts from the cursor: a row of depth 0, which is no pair (every step below is
        -- written once, so Postgres plans it once).
        select g.ord, gt.type, c.queue, c.key, false, 0, 0, false, null::float8
        from groups g
        cross join unnest(g.types) as gt(type)
        cross join lateral ${cursorSql("gt.type")} c
        union all
        select p.ord, p.type, f.queue, f.key, f.wrapped, p.depth + 1, p.found + u.useful::int4, u.useful, kt.tokens
        from pairs p
        join groups g on g.ord = p.ord
        cross join lateral ${nextPairSql("p")} f
        cross join lateral (select ${keyTokens("f.queue", "f.key")} as tokens offset 0) kt
        cross join lateral (select ${pairUseful("p.type", "f.queue", "f.key", "g.queues", "kt.tokens")} as useful offset 0) u
        where p.found < g.n_slots and p.depth < ${MAX_PAIRS_VISITED}
      ),
      key_pairs as (
        select p.ord, p.type, p.queue, p.key, p.depth, w.weight,
               case when p.queue = c.queue and p.key = c.key then c.spent else 0 end as spent,
               least(ceil(g.n_slots * w.weight / sum(w.weight) over (partition by p.ord, p.type)::float8)::int4,
                     coalesce(${keyFreeSql("p.queue", "p.key")}, g.n_slots), coalesce(floor(p.tokens)::int4, g.n_slots)) as take
        from pairs p
        join groups g on g.ord = p.ord
        cross join lateral (select coalesce(($11::jsonb -> p.queue ->> p.key)::int4, 1) as weight) w
        cross join lateral ${cursorSql("p.type")} c
        where p.useful
      ),`
          : ""
      }
      candidates as (
        select distinct on (c.id) c.id, c.type, c.queue, c.key, c.depth, c.urgent, c.turn, c.weight, c.spent, c.priority, c.next_try_at,
               g.slots[c.rn] as session_id
        from groups g
        cross join lateral (
          select s.*, row_number() over (order by ${FAIR_ORDER}) as rn
          from (
            select x.*,
                   (row_number() over (partition by x.queue, x.key order by x.priority desc, x.next_try_at, x.id) - 1 + x.spent) / x.weight as turn,
                   coalesce(x.priority >= ($12::jsonb ->> x.queue)::int4, false) as urgent
            from (
              select t.id, gt.type, t.queue, null::text as key, ${keys ? unkeyedDepthSql : "0::float8"} as depth, 1 as weight, 0 as spent,
                     t.priority, t.next_try_at
              from unnest(g.types) as gt(type)
              ${keys ? `cross join lateral ${cursorSql("gt.type")} c` : ""}
              cross join lateral (
                select t.id, t.queue, t.priority, t.next_try_at
                from taskq.tasks t
                where t.status = 'pending' and t.concurrency_key is null and t.type = gt.type and t.next_try_at <= $2
                  and ${queueOpen("t.queue", "g.queues")}
                order by t.priority desc, t.next_try_at, t.id
                limit cardinality(g.slots)
                for update skip locked
              ) t
              ${
                keys
                  ? `union all
              select t.id, gt.type, t.queue, t.concurrency_key, 0::float8, 1, 0, t.priority, t.next_try_at
              from unnest(g.types) as gt(type)
              cross join lateral (
                select t.id, t.queue, t.concurrency_key, t.priority, t.next_try_at
                from taskq.tasks t
                where $12::jsonb <> '{}' and t.status = 'pending' and t.concurrency_key is not null and t.priority > 0
                  and t.type = gt.type and t.priority >= (select min(u.value::int4) from jsonb_each_text($12::jsonb) u)
                  and t.priority >= ($12::jsonb ->> t.queue)::int4 and t.next_try_at <= $2
                  and ${queueOpen("t.queue", "g.queues")} and coalesce(${keyFreeSql("t.queue", "t.concurrency_key")}, 1) > 0
                  and coalesce(${keyTokens("t.queue", "t.concurrency_key")}, 1) >= 1
                order by t.priority desc, t.next_try_at, t.id
                limit cardinality(g.slots)
                for update skip locked
              ) t
              union all
              select t.id, kp.type, kp.queue, kp.key, kp.depth::float8, kp.weight, kp.spent, t.priority, t.next_try_at
              from key_pairs kp
              cross join lateral (
                select t.id, t.priority, t.next_try_at
                from taskq.tasks t
                where t.status = 'pending' and t.concurrency_key is not null and t.type = kp.type and t.queue = kp.queue
                  and t.concurrency_key = kp.key and t.next_try_at <= $2
                  and t.priority < coalesce(($12::jsonb ->> kp.queue)::int4, 2147483647) -- urgent ones: read above
                order by t.priority desc, t.next_try_at, t.id
                limit kp.take
                for update skip locked
              ) t
              where kp.ord = g.ord`
                  : ""
              }
            ) x
          ) s
          order by rn
          limit cardinality(g.slots)
        ) c
        order by c.id, g.ord
      ),
      picked as (
        select c.id, c.session_id, c.type, c.queue, c.key, c.depth, c.turn, c.urgent, c.weight, c.spent
        from (
          select c.*,
                 row_number() over (partition by c.queue order by ${FAIR_ORDER}) as queue_rank,
                 ${keys ? `row_number() over (partition by c.queue, c.key order by ${FAIR_ORDER}) as key_rank,` : ""}
                 row_number() over (order by ${FAIR_ORDER}) as global_rank
          from candidates c
        ) c
        left join queue_free f on f.queue = c.queue
        ${rates ? "left join queue_tokens qt on qt.queue = c.queue" : ""}
        where (f.n is null or c.queue_rank <= f.n)
          ${rates ? "and (qt.n is null or c.queue_rank <= floor(qt.n))" : ""}
          ${keys ? `and (c.key is null or c.key_rank <= coalesce(${keyFreeSql("c.queue", "c.key")}, c.key_rank))` : ""}
          ${keys && rates ? `and (c.key is null or c.key_rank <= coalesce(floor(${keyTokens("c.queue", "c.key")}), c.key_rank))` : ""}
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
      ),
      ${
        rates
          ? `drawn as (
        -- The tokens the leases took from their queue's bucket and their key's.
        insert into taskq.rate_buckets (queue, key, tokens, at)
        select d.queue, d.key, d.tokens, $2
        from (
          select qt.queue, '' as key, qt.n - count(*) as tokens
          from queue_tokens qt join picked p on p.queue = qt.queue
          group by qt.queue, qt.n
          ${
            keys
              ? `union all
          select p.queue, p.key, min(${keyTokens("p.queue", "p.key")}) - count(*)
          from picked p join rates ra on ra.queue = p.queue
          where p.key is not null and ra.k_rate is not null
          group by p.queue, p.key`
              : ""
          }
        ) d
        on conflict (queue, key) do update set tokens = excluded.tokens, at = excluded.at
        returning queue, key, tokens
      ),
      rate_wait as (
        -- When the next token comes to a bucket that held a task back (or may, having none left).
        select min(w.ms) as ms
        from (
          select (1 - d.tokens) / (case when d.key = '' then ra.q_rate else ra.k_rate end) as ms
          from drawn d join rates ra on ra.queue = d.queue where d.tokens < 1
          union all
          select (1 - qt.n) / qt.rate from queue_tokens qt where qt.n < 1
          ${keys ? "union all select (1 - p.tokens) / ra.k_rate from pairs p join rates ra on ra.queue = p.queue where p.tokens < 1" : ""}
        ) w
      ),`
          : ""
      }
      walked as (
        ${
          keys
            ? `-- Where each type's next walk starts: after the pair of the last turn taken (unkeyed tasks of a
        -- queue stand at (queue, '')), or, when none was and the walk stopped at its bound, after the last
        -- pair it visited.
        select coalesce(jsonb_object_agg(w.type, jsonb_build_array(w.queue, w.key, w.spent)), '{}')::text as cursors,
               coalesce(bool_or(w.capped), false) as capped,
               array(select distinct p.type from pairs p where p.depth > 0) as keyed_types
        from (
          select distinct on (x.type) x.type, x.queue, x.key, x.spent, x.capped
          from (
            select p.type, p.queue, coalesce(p.key, '') as key,
                   (p.spent + count(*) over (partition by p.type, p.queue, p.key)) % p.weight as spent, p.turn, p.depth,
                   1 as got, false as capped
            from picked p where not p.urgent and exists (select 1 from pairs where depth > 0) -- no keys, no turns to keep
            union all
            select p.type, p.queue, p.key, 0, 0, p.depth, 0, true from pairs p where p.depth >= ${MAX_PAIRS_VISITED}
          ) x
          order by x.type, x.got desc, x.turn desc, x.depth desc
        ) w`
            : `-- Whether keyed tasks of these types wait: the next claim must then walk the keys.
        select '{}'::text as cursors, false as capped,
               array(select distinct gt.type from groups g cross join unnest(g.types) as gt(type)
                     where exists (select 1 from taskq.tasks t
                                   where t.status = 'pending' and t.concurrency_key is not null and t.type = gt.type)) as keyed_types`
        }
      )
      select u.*, ${tasksChangedNotifySql("updated")} as notified, w.cursors, w.capped, w.keyed_types,
             ${rates ? "(select ceil(ms)::float8 from rate_wait)" : "null::float8"} as rate_wait_ms
      from walked w left join updated u on true`;
}

/** The claim's order across pairs: urgent tasks first, then turn by turn, pairs in walk order, claim order last. */
const FAIR_ORDER = "urgent desc, turn, depth, priority desc, next_try_at, id";

/** Whether a queue's tasks may be leased to a group now: in its queues, not excluded, paused or full, and the global limit not reached. */
const queueOpenSql = (queue: string, groupQueues: string) => `(${groupQueues} is null or ${queue} = any(${groupQueues}))
  and ($8::text[] is null or ${queue} <> all($8::text[]))
  and not exists (select 1 from queue_free f where f.queue = ${queue} and f.n = 0)
  and not exists (select 1 from taskq.queues q where q.name = ${queue} and q.paused)
  and coalesce((select n from global_free), 1) > 0`;

/**
 * Where a queue's unkeyed tasks take their turn: as the pair (queue, ''), which comes before the queue's
 * keys in the walk's order. The walk visited this many pairs before that place, plus a half; 0 when
 * there are no keyed tasks to take turns with.
 */
const unkeyedDepthSql = `(case when not exists (select 1 from pairs where depth > 0) then 0::float8 else 0.5 + (
  select count(*) from pairs p
  where p.ord = g.ord and p.type = gt.type and p.depth > 0
    and (p.wrapped, p.queue, p.key) < ((t.queue, '') <= (c.queue, c.key), t.queue, ''))
end)`;

/** How many more tasks of `key` may run in `queue` under its max_running_per_key; null when the queue has none. */
const keyFreeSql = (queue: string, key: string) =>
  `(($9::jsonb ->> ${queue})::int4 - coalesce((select kr.n from key_running kr where kr.queue = ${queue} and kr.key = ${key}), 0))`;

/** The tokens of `key`'s bucket in `queue` now; null when the queue has no rate_limit_per_key. */
const keyTokensSql = (queue: string, key: string) => `(
  select ${tokensSql("b", "ra.k_rate", "ra.k_burst", "$2")}
  from rates ra left join taskq.rate_buckets b on b.queue = ra.queue and b.key = ${key}
  where ra.queue = ${queue} and ra.k_rate is not null)`;

/**
 * Where the walk over `type`'s pairs starts: after the pair the caller kept, or at it when that pair
 * has `spent` of its weight's turns of this round already (a weighted key's round may span claims).
 */
const cursorSql = (type: string) =>
  `(select coalesce($10::jsonb -> ${type} ->> 0, '') as queue, coalesce($10::jsonb -> ${type} ->> 1, '') as key,
           coalesce(($10::jsonb -> ${type} ->> 2)::int4, 0) as spent)`;

/** The pairs of `type` with pending keyed tasks, in (queue, key) order, from the first after `where`. */
const pairFromSql = (type: string, wrapped: string, where: string) => `
    (select t.queue, t.concurrency_key as key, ${wrapped} as wrapped from taskq.tasks t
     where t.status = 'pending' and t.concurrency_key is not null and t.type = ${type} ${where}
     order by t.queue, t.concurrency_key limit 1)`;

/** Ends the walk once it has come round to the caller's cursor `c`. */
const notRoundSql = `not (n.wrapped and ((n.queue, n.key) > (c.queue, c.key) or (c.spent > 0 and n.queue = c.queue and n.key = c.key)))`;

/**
 * The walk's step from row `p` (the cursor itself at depth 0): at depth 0 the cursor's own pair if it
 * has turns left, else the pair after p's, else (wrapping once) the first pair; none once the walk has
 * come round to the cursor.
 */
const nextPairSql = (p: string) => `(
  select n.queue, n.key, n.wrapped
  from ${cursorSql(`${p}.type`)} c
  cross join lateral (
    ${pairFromSql(`${p}.type`, "false", `and ${p}.depth = 0 and c.spent > 0 and t.queue = c.queue and t.concurrency_key = c.key`)}
    union all
    ${pairFromSql(`${p}.type`, `${p}.wrapped`, `and (t.queue, t.concurrency_key) > (${p}.queue, ${p}.key)`)}
    union all
    ${pairFromSql(`${p}.type`, "true", `and not ${p}.wrapped`)}
    limit 1
  ) n
  where ${notRoundSql})`;

/**
 * A timestamp as whole epoch milliseconds, as a Date holds it: the driver parses a timestamp's text
 * with a regular expression into a Date (3 % of the server's profile in (a) for the lease's three); a
 * number costs it a parseFloat.
 */
const epochMsSql = (column: string) => `floor(extract(epoch from ${column}) * 1000)::float8`;

interface LeasedRow {
  /** null on the one row of a claim that leased nothing. */
  id: string | null;
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
  /** KeyCursors as JSON text, the same on every row. */
  cursors: string;
  capped: boolean;
  rate_wait_ms: number | null;
  keyed_types: string[];
}

const leasedFromRow = (r: LeasedRow): LeasedTask => ({
  id: r.id!,
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
