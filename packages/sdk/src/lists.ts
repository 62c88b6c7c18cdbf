/**
 * The options of the two task lists, in the SDK's own terms (status and origin names, sort keys,
 * Dates), and their conversion to the wire requests. Every filter the ListActive and ListHistory
 * requests have is here. A name the wire has no value for is refused here, as INVALID_ARGUMENT, rather
 * than sent as "any".
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ActiveSortField, ListActiveRequestSchema, ListHistoryRequestSchema, Origin, type TaskStatus } from "@taskq/protocol";
import { Code, TaskqError } from "./errors.js";
import { statusFromName, type ActiveStatusName, type TaskInfo, type TaskOrigin, type TaskStatusName } from "./types.js";

/** The columns the Active list sorts by. */
export const ACTIVE_SORT_KEYS = ["id", "status", "title", "created", "started", "attempts", "priority", "type", "origin"] as const;
export type ActiveSortKey = (typeof ACTIVE_SORT_KEYS)[number];

const SORT_FIELD: Record<ActiveSortKey, ActiveSortField> = {
  id: ActiveSortField.ID,
  status: ActiveSortField.STATUS,
  title: ActiveSortField.TITLE,
  created: ActiveSortField.CREATED_AT,
  started: ActiveSortField.STARTED_AT,
  attempts: ActiveSortField.ATTEMPTS,
  priority: ActiveSortField.PRIORITY,
  type: ActiveSortField.TYPE,
  origin: ActiveSortField.ORIGIN,
};

/** Filters, order and page of the Active list: the tasks pending, running or cancelling. Filters combine. */
export interface ListActiveOptions {
  /** Only the task with this id. */
  id?: string;
  /** Only tasks whose title contains this text, ignoring case. */
  titleSearch?: string;
  /** Only tasks of this type. */
  type?: string;
  /** Only tasks whose type starts with this text (case matters). */
  typePrefix?: string;
  /** Only tasks of this queue. */
  queue?: string;
  /** Only tasks in these statuses; default all three. */
  statuses?: ActiveStatusName[];
  /** Only tasks created at or after this time. */
  createdAfter?: Date;
  /** Only tasks created before this time. */
  createdBefore?: Date;
  /** The column to sort by; default "created" (ties by id). */
  sort?: ActiveSortKey;
  /** Sort descending instead of ascending. */
  descending?: boolean;
  /** The most tasks to return, 1 to 500; default the server's, 50. */
  pageSize?: number;
  /** The nextPageToken of a previous page with the same filters and sort. */
  pageToken?: string;
}

/** Filters and page of the Task history: running and finished tasks, newest first. Filters combine. */
export interface ListHistoryOptions {
  /** Only tasks of this origin; default both. */
  origin?: TaskOrigin;
  /** Only tasks in these statuses (running, cancelling or final: pending tasks are not history); default all of them. */
  statuses?: TaskStatusName[];
  /** Only tasks created at or after this time. */
  createdAfter?: Date;
  /** Only tasks created before this time. */
  createdBefore?: Date;
  /** Only tasks of this type. */
  type?: string;
  /** Only tasks whose type starts with this text (case matters). */
  typePrefix?: string;
  /** Only tasks of this queue. */
  queue?: string;
  /** The most tasks to return, 1 to 500; default the server's, 50. */
  pageSize?: number;
  /** The nextPageToken of a previous page with the same filters. */
  pageToken?: string;
}

/** One page of a list: its tasks (without params, status values or log) and the token of the next page, "" on the last. */
export interface TaskPage {
  tasks: TaskInfo[];
  nextPageToken: string;
}

export function listActiveRequest(o: ListActiveOptions) {
  if (o.sort !== undefined && !Object.hasOwn(SORT_FIELD, o.sort)) throw invalid(`sort: "${o.sort}" is not one of ${ACTIVE_SORT_KEYS.join(", ")}`);
  return create(ListActiveRequestSchema, {
    id: o.id,
    titleSearch: o.titleSearch,
    type: o.type,
    typePrefix: o.typePrefix,
    queue: o.queue,
    statuses: statuses(o.statuses),
    createdAfter: timestamp("createdAfter", o.createdAfter),
    createdBefore: timestamp("createdBefore", o.createdBefore),
    sortBy: o.sort === undefined ? ActiveSortField.UNSPECIFIED : SORT_FIELD[o.sort],
    descending: o.descending,
    pageSize: o.pageSize,
    pageToken: o.pageToken,
  });
}

export function listHistoryRequest(o: ListHistoryOptions) {
  const origin = o.origin === undefined ? Origin.UNSPECIFIED : o.origin === "user" ? Origin.USER : o.origin === "system" ? Origin.SYSTEM : undefined;
  if (origin === undefined) throw invalid(`origin: "${o.origin}" is not user or system`);
  return create(ListHistoryRequestSchema, {
    origin,
    statuses: statuses(o.statuses),
    createdAfter: timestamp("createdAfter", o.createdAfter),
    createdBefore: timestamp("createdBefore", o.createdBefore),
    type: o.type,
    typePrefix: o.typePrefix,
    queue: o.queue,
    pageSize: o.pageSize,
    pageToken: o.pageToken,
  });
}

function statuses(names: readonly string[] = []): TaskStatus[] {
  return names.map((name, i) => {
    const status = statusFromName(name);
    if (status === undefined) throw invalid(`statuses[${i}]: "${name}" is not a status`);
    return status;
  });
}

function timestamp(field: string, d: Date | undefined) {
  if (d === undefined) return undefined;
  if (Number.isNaN(d.getTime())) throw invalid(`${field}: not a valid date`);
  return timestampFromDate(d);
}

const invalid = (message: string) => new TaskqError(message, Code.InvalidArgument);
