import type pg from "pg";

/** Anything that runs a query: the pool, or one client inside a transaction. */
export type Db = Pick<pg.Pool, "query">;

/**
 * Runs `fn` in a transaction on one pooled client: commit when it resolves, roll back when it throws.
 * While checked out, the client has an error listener: a connection that dies between two statements
 * (a database restart) emits 'error' on the client, which with no listener would crash the process.
 * The statement in flight fails instead, and the broken client is discarded.
 */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => (broken = err);
  client.on("error", onError);
  try {
    await client.query("begin");
    const result = await fn(client);
    await client.query("commit");
    return result;
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw err;
  } finally {
    client.off("error", onError);
    client.release(broken);
  }
}

/**
 * The database's clock, in milliseconds since the epoch (with the microseconds as a fraction).
 * clock_timestamp() is the time of the call; now() would be the start of the transaction.
 */
export async function clockTimestampRead(db: Db): Promise<number> {
  const { rows } = await db.query<{ ms: number }>({
    name: "clockTimestampRead",
    text: "select extract(epoch from clock_timestamp())::float8 * 1000 as ms",
  });
  return rows[0].ms;
}

/** Channels of LISTEN/NOTIFY. */
/**
 * Pending work may be claimable. Payload: "" (anything), "q1,q2" (new tasks in these queues), or
 * "@<epoch ms>" (a task becomes due then, by the database's clock: a retry's delay).
 */
export const CHANNEL_DISPATCH = "taskq_dispatch";
export const CHANNEL_TASK = "taskq_task"; // payload: comma-separated ids of tasks that changed
export const CHANNEL_CANCEL = "taskq_cancel"; // payload: "<session id>:<task id>:<lease token>:<reason>"
export const CHANNEL_SCHEDULE = "taskq_schedule"; // payload ignored: schedules were declared or changed

/** Finish batches stay under this so a NOTIFY payload of their ids fits in 8000 bytes. */
export const MAX_IDS_PER_NOTIFY = 256;

/**
 * A select-list expression that sends CHANNEL_TASK naming every id of `cte`, at most MAX_IDS_PER_NOTIFY
 * ids per notification, so a payload stays under Postgres's 8000 bytes however many rows there are.
 */
export const tasksChangedNotifySql = (cte: string) => `(
  select count(pg_notify('${CHANNEL_TASK}', n.ids)) from (
    select string_agg(c.id::text, ',') as ids
    from (select id, (row_number() over ()) / ${MAX_IDS_PER_NOTIFY} as chunk from ${cte}) c
    group by c.chunk) n)`;

/**
 * A select-list expression that sends CHANNEL_DISPATCH "@<epoch ms>" for the earliest next_try_at of
 * `cte` (tasks sent back to wait), so every dispatcher claims when it comes, not at its next poll.
 */
export const dueNotifySql = (cte: string) => `(
  select pg_notify('${CHANNEL_DISPATCH}', '@' || ceil(extract(epoch from m.at) * 1000)::int8)
  from (select min(next_try_at) as at from ${cte}) m where m.at is not null)`;
