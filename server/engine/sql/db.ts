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
export const CHANNEL_DISPATCH = "taskq_dispatch"; // payload ignored: pending work may be available
export const CHANNEL_TASK = "taskq_task"; // payload: comma-separated ids of tasks that changed
export const CHANNEL_CANCEL = "taskq_cancel"; // payload: "<session id>:<task id>:<lease token>:<reason>"
export const CHANNEL_SCHEDULE = "taskq_schedule"; // payload ignored: schedules were declared or changed

/** Finish batches stay under this so a NOTIFY payload of their ids fits in 8000 bytes. */
export const MAX_IDS_PER_NOTIFY = 256;
