/**
 * Bulk actions and the audit log in the SDK's own terms: the filter of interruptMany and retryMany
 * (status and origin names, Dates), their options and result, and the audit log's entries, with their
 * conversion to and from the wire. A name the wire has no value for is refused here, as
 * INVALID_ARGUMENT, rather than sent as "any".
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Origin, TaskFilterSchema, type AuditEntry as PbAuditEntry, type TaskStatus } from "@taskq/protocol";
import { Code, TaskqError } from "./errors.js";
import { statusFromName, type TaskOrigin, type TaskStatusName } from "./types.js";

/**
 * The tasks a bulk action applies to: a task matches when it matches every field given. At least one
 * must be given (the server refuses an empty filter); to act on every task, name the statuses.
 */
export interface TaskFilter {
  /** Only tasks of this queue. */
  queue?: string;
  /** Only tasks of this type. */
  type?: string;
  /** Only tasks whose type starts with this text (case matters). */
  typePrefix?: string;
  /** Only the tasks with these ids, at most 500: a selection. */
  ids?: string[];
  /**
   * Only tasks in these statuses; default every status the action applies to: pending and running for
   * interruptMany, failed, canceled and stuck for retryMany.
   */
  statuses?: TaskStatusName[];
  /** Only tasks created at or after this time. */
  createdAfter?: Date;
  /** Only tasks created before this time. */
  createdBefore?: Date;
  /** Only tasks of this origin; default both. */
  origin?: TaskOrigin;
}

export interface BulkOptions {
  /** Only count the tasks the action would apply to; change nothing. */
  dryRun?: boolean;
  /** The most tasks to act on in this call, 1 to 10,000; default 10,000. */
  limit?: number;
}

export interface InterruptManyOptions extends BulkOptions {
  /** Why the tasks are interrupted; each task's error becomes "interrupted: <reason>". */
  reason?: string;
}

/** What a bulk action did, or with dryRun would do. */
export interface BulkResult {
  /** The tasks acted on; with dryRun, the tasks that match, at most the limit. */
  count: number;
  /** Whether matching tasks remain beyond this call's: call again to go on. */
  moreRemain: boolean;
}

/** One call that changed tasks: a retry, or a bulk action that was not a dry run. */
export interface AuditEntry {
  id: string;
  time: Date;
  /** The name of the auth token used; "anonymous" when the server runs without auth. */
  actor: string;
  /** "retry", "interrupt_many" or "retry_many". */
  action: string;
  /** What was asked: the task id and its retry's id, or the filter, limit and reason. */
  params: JsonObject;
  /** How many tasks the call changed. */
  affected: number;
}

export interface ListAuditOptions {
  /** The most entries to return, 1 to 500; default the server's, 50. */
  pageSize?: number;
  /** The nextPageToken of a previous page. */
  pageToken?: string;
}

/** One page of the audit log, newest first, and the token of the next page ("" on the last). */
export interface AuditPage {
  entries: AuditEntry[];
  nextPageToken: string;
}

export function taskFilterToPb(f: TaskFilter) {
  const origin = f.origin === undefined ? Origin.UNSPECIFIED : f.origin === "user" ? Origin.USER : f.origin === "system" ? Origin.SYSTEM : undefined;
  if (origin === undefined) throw invalid(`origin: "${f.origin}" is not user or system`);
  return create(TaskFilterSchema, {
    queue: f.queue,
    type: f.type,
    typePrefix: f.typePrefix,
    ids: f.ids,
    statuses: (f.statuses ?? []).map((name, i): TaskStatus => {
      const status = statusFromName(name);
      if (status === undefined) throw invalid(`statuses[${i}]: "${name}" is not a status`);
      return status;
    }),
    createdAfter: timestamp("createdAfter", f.createdAfter),
    createdBefore: timestamp("createdBefore", f.createdBefore),
    origin,
  });
}

export const auditEntryFromPb = (e: PbAuditEntry): AuditEntry => ({
  id: e.id,
  time: e.time ? timestampDate(e.time) : new Date(0),
  actor: e.actor,
  action: e.action,
  params: e.params ?? {},
  affected: e.affected,
});

function timestamp(field: string, d: Date | undefined) {
  if (d === undefined) return undefined;
  if (Number.isNaN(d.getTime())) throw invalid(`${field}: not a valid date`);
  return timestampFromDate(d);
}

const invalid = (message: string) => new TaskqError(message, Code.InvalidArgument);
