/**
 * Moving a task from the hot queue to history. Every path that ends a task (finish, interrupt of a
 * pending task, a lost lease on its last attempt) deletes the active row and inserts the history row
 * in the same statement, so a task is never in both tables, nor in neither.
 */

/**
 * A CTE pair that deletes the rows of `tasks` named by `source` (a CTE with columns id, final_status,
 * result, final_error, ended_by, where final_status is a final status) and archives them. `nowParam` is the
 * placeholder of the finish time. Use it inside a WITH list: `with source as (...), ${archiveCtes(...)}`.
 */
export function archiveCtes(source: string, nowParam: string): string {
  return `
    archived_rows as (
      delete from taskq.tasks t using ${source} s
      where t.id = s.id and s.final_status in ('completed', 'failed', 'canceled', 'stuck')
      returning t.*, s.final_status, s.result as final_result, s.ended_by,
        -- A completed task's error is empty, whatever an earlier attempt left.
        case when s.final_status = 'completed' then '' else coalesce(s.final_error, t.error) end as final_error
    ),
    archived as (
      insert into taskq.history (id, type, queue, status, priority, params, title, origin, initiator, node_id,
        idempotency_key, attempts, max_attempts, retry_delay_ms, retry_backoff, timeout_ms, created_at,
        started_at, finished_at, worker, status_values, log_seq, result, error, status_changes, ended_by, retry_of,
        concurrency_key)
      select id, type, queue, final_status, priority, params, title, origin, initiator, node_id,
        idempotency_key, attempts, max_attempts, retry_delay_ms, retry_backoff, timeout_ms, created_at,
        started_at, ${nowParam}, worker, status_values, log_seq,
        case when final_status = 'completed' then final_result end,
        final_error, status_changes, ended_by, retry_of, concurrency_key
      from archived_rows
      returning id
    )`;
}
