/** Statements that create tasks. */
import type { DispatchResult, NewTask } from "../types.js";
import type { Db } from "./db.js";

/**
 * Inserts tasks in one statement. Every input row draws an id; a row with an idempotency key claims
 * the key first (`on conflict do nothing`) and is inserted only if the key was new. Rows whose key
 * already existed come back with created = false and no id: look them up with idempotencyKeyFind,
 * which runs in a new snapshot and so sees keys committed by a concurrent statement this one waited on.
 * The statement-level insert trigger wakes every replica's lease dispatcher. A task's trace context,
 * when it has one, is stored with it (two nulls when it has none), and so is its concurrency key.
 */
export async function taskInsertMany(db: Db, tasks: NewTask[], now: Date): Promise<(DispatchResult | null)[]> {
  const col = <K extends keyof NewTask>(k: K) => tasks.map((t) => t[k]);
  const { rows } = await db.query<{ ord: number; id: string; created: boolean }>({
    name: "taskInsertMany",
    text: `
      with input as (
        select i.*, nextval('taskq.task_id_seq') as new_id
        from unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::int4[], $6::text[], $7::text[],
                    $8::text[], $9::int8[], $10::int4[], $11::int8[], $12::text[], $13::timestamptz[], $14::text[],
                    $16::text[], $17::text[], $18::text[])
          with ordinality as i(type, queue, params, title, priority, origin, initiator, node_id, timeout_ms,
                               max_attempts, retry_delay_ms, retry_backoff, run_at, idempotency_key,
                               trace_parent, trace_state, concurrency_key, ord)
      ),
      keyed as (
        insert into taskq.idempotency_keys (key, task_id, created_at)
        select idempotency_key, new_id, $15 from input where idempotency_key is not null
        on conflict (key) do nothing
        returning key
      ),
      inserted as (
        insert into taskq.tasks (id, type, queue, status, params, title, priority, origin, initiator, node_id,
                                 timeout_ms, max_attempts, retry_delay_ms, retry_backoff, idempotency_key,
                                 created_at, next_try_at, trace_parent, trace_state, concurrency_key)
        select i.new_id, i.type, i.queue, 'pending', i.params, i.title, i.priority, i.origin, i.initiator, i.node_id,
               i.timeout_ms, i.max_attempts, i.retry_delay_ms, i.retry_backoff, i.idempotency_key,
               $15, coalesce(i.run_at, $15), i.trace_parent, i.trace_state, i.concurrency_key
        from input i
        where i.idempotency_key is null or i.idempotency_key in (select key from keyed)
        returning id
      )
      select i.ord::int4 as ord, i.new_id::text as id,
             (i.idempotency_key is null or k.key is not null) as created
      from input i left join keyed k on k.key = i.idempotency_key
      order by i.ord`,
    values: [
      col("type"),
      col("queue"),
      tasks.map((t) => JSON.stringify(t.params)),
      col("title"),
      col("priority"),
      col("origin"),
      col("initiator"),
      col("nodeId"),
      col("timeoutMs"),
      col("maxAttempts"),
      col("retryDelayMs"),
      col("retryBackoff"),
      col("runAt"),
      col("idempotencyKey"),
      now,
      tasks.map((t) => t.trace?.parent ?? null),
      tasks.map((t) => t.trace?.state ?? null),
      col("concurrencyKey"),
    ],
  });
  return rows.map((r) => (r.created ? { id: r.id, created: true } : null));
}

/** The task ids that the given idempotency keys already name. */
export async function idempotencyKeyFind(db: Db, keys: string[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ key: string; task_id: string }>(
    "select key, task_id::text from taskq.idempotency_keys where key = any($1::text[])",
    [keys],
  );
  return new Map(rows.map((r) => [r.key, r.task_id]));
}
