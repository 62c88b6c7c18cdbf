/** The filter of a bulk action (InterruptMany, RetryMany) as SQL conditions. */
import type { TaskFilter } from "../types.js";

/**
 * The conditions `filter` puts on task rows `t` (of tasks or of history: both have these columns),
 * joined with "and"; each value goes through `param`, which returns its placeholder. The statuses must
 * already be those the action takes (never empty).
 */
export function taskFilterSql(t: string, filter: TaskFilter, param: (value: unknown) => string): string {
  const where = [`${t}.status = any(${param(filter.statuses)}::text[])`];
  if (filter.queue !== null) where.push(`${t}.queue = ${param(filter.queue)}`);
  if (filter.type !== null) where.push(`${t}.type = ${param(filter.type)}`);
  if (filter.typePrefix !== null) where.push(`${t}.type like ${param(`${escapeLike(filter.typePrefix)}%`)}`);
  if (filter.ids.length > 0) where.push(`${t}.id = any(${param(filter.ids)}::int8[])`);
  if (filter.origin !== null) where.push(`${t}.origin = ${param(filter.origin)}`);
  if (filter.createdAfter) where.push(`${t}.created_at >= ${param(filter.createdAfter)}`);
  if (filter.createdBefore) where.push(`${t}.created_at < ${param(filter.createdBefore)}`);
  return where.join(" and ");
}

/** A list of statement values and a function that adds one and returns its placeholder. */
export function statementValues(): { values: unknown[]; param: (value: unknown) => string } {
  const values: unknown[] = [];
  return { values, param: (value) => `$${values.push(value)}` };
}

/** `s` for a LIKE pattern: its own %, _ and \ match only themselves. */
export const escapeLike = (s: string) => s.replace(/[\\%_]/g, (m) => `\\${m}`);
