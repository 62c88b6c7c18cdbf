import type pg from "pg";

/** Anything that runs a query: the pool, or one client inside a transaction. */
export type Db = Pick<pg.Pool, "query">;

/** Channels of LISTEN/NOTIFY. */
export const CHANNEL_DISPATCH = "taskq_dispatch"; // payload ignored: pending work may be available
export const CHANNEL_TASK = "taskq_task"; // payload: comma-separated ids of tasks that changed
export const CHANNEL_CANCEL = "taskq_cancel"; // payload: "<session id>:<task id>:<lease token>:<reason>"
export const CHANNEL_SCHEDULE = "taskq_schedule"; // payload ignored: schedules were declared or changed

/** Finish batches stay under this so a NOTIFY payload of their ids fits in 8000 bytes. */
export const MAX_IDS_PER_NOTIFY = 256;
