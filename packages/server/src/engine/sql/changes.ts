/**
 * Status changes as SQL: every statement that changes a task's status appends one entry to its
 * status_changes array (migration 008), in the same UPDATE or archive INSERT, so the record can never
 * disagree with the status.
 */

/**
 * The fields of one change; each is an SQL expression. `worker` and `error` may be omitted, and so may
 * `replica` and `ended` (migration 009), which are written only when given. The time is kept as epoch
 * ms: a number costs Postgres less to write than a timestamp's text, on every lease.
 */
export interface ChangeSql {
  status: string;
  attempts: string;
  at: string;
  /** The task's log_seq when the change happened. */
  seq: string;
  worker?: string;
  error?: string;
  /** A running change: the replica holding the worker's session. */
  replica?: string;
  /** A change that ended an attempt: how (an EndedBy word). */
  ended?: string;
}

/** An expression for the array `changes` with one change appended. */
export function changeAppendSql(changes: string, c: ChangeSql): string {
  const optional = [c.replica === undefined ? "" : `, 'r', ${c.replica}`, c.ended === undefined ? "" : `, 'o', ${c.ended}`].join("");
  return `${changes} || jsonb_build_object('s', ${c.status}, 'a', ${c.attempts}, 'w', ${c.worker ?? "''"},
    'e', ${c.error ?? "''"}, 'at', date_part('epoch', (${c.at})::timestamptz) * 1000, 'q', ${c.seq}${optional})`;
}
