/**
 * The audit log (migration 011): one row per call that changed tasks, written by the statements that
 * make the change, so the log never tells of a change that did not happen or misses one that did.
 */
import type { AuditAction, AuditEntry, AuditRecord, JsonObject } from "../types.js";
import type { Db } from "./db.js";

/** The placeholders (or SQL expressions) of one audit row. */
export interface AuditSql {
  /** The row to count up (a bulk action's later batches), or an expression that is null for a new row. */
  id: string;
  at: string;
  actor: string;
  action: AuditAction;
  /** A jsonb expression: what the call was asked to do. */
  params: string;
}

/** An AuditRecord as placeholders added through `param`. */
export function auditSql(a: AuditRecord, now: Date, param: (value: unknown) => string): AuditSql {
  return { id: param(a.id), at: param(now), actor: param(a.actor), action: a.action, params: `${param(JSON.stringify(a.params))}::jsonb` };
}

/**
 * CTEs that record the rows of `changed` (a CTE with one row per task changed) in the audit log: with
 * `a.id` null, a new row when anything changed (none when nothing did); else that row's count grows.
 * Use inside a WITH list, and select `auditIdSql(a)` for the row's id.
 */
export function auditCtes(changed: string, a: AuditSql): string {
  return `
    audit_count as (select count(*)::int4 as n from ${changed}),
    audit_new as (
      insert into taskq.audit_log (at, actor, action, params, affected)
      select ${a.at}, ${a.actor}, '${a.action}', ${a.params}, c.n
      from audit_count c where c.n > 0 and ${a.id}::int8 is null
      returning id
    ),
    audit_added as (
      update taskq.audit_log l set affected = l.affected + c.n
      from audit_count c where l.id = ${a.id}::int8 and c.n > 0
      returning l.id
    )`;
}

/** A select-list expression: the id of the audit row (as text), null when none was written. */
export const auditIdSql = (a: AuditSql) => `coalesce((select id from audit_new), ${a.id}::int8)::text`;

/** One page of the audit log, newest first, starting after the entry `beforeId` (null: the newest). */
export async function auditList(db: Db, q: { limit: number; beforeId: string | null }): Promise<AuditEntry[]> {
  const { rows } = await db.query<{ id: string; at: Date; actor: string; action: AuditAction; params: JsonObject; affected: number }>({
    name: "auditList",
    text: `
      select id::text, at, actor, action, params, affected
      from taskq.audit_log
      where $1::int8 is null or id < $1::int8
      order by id desc
      limit $2`,
    values: [q.beforeId, q.limit],
  });
  return rows;
}
