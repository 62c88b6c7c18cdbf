/** The TaskQueue service: validate, call the engine, convert. */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { invalidArgument } from "../engine/index.js";
import type { ActiveSortColumn, ActiveStatus, Engine, WatchEvent } from "../engine/index.js";
import { Origin, TaskStatus } from "@taskq/protocol";
import {
  ActiveSortField,
  type TaskQueue,
  WatchTaskResponseSchema,
  type WatchTaskResponse,
} from "@taskq/protocol";
import { STATUS_TO_PB, auditEntryToPb, logEntryToPb, queueToPb, scheduleToPb, statsSampleToPb, taskToPb, valueToPb, workerToPb } from "./convert.js";
import { actorOf } from "./auth.js";
import { CONNECTION, PerConnection } from "./connection.js";
import { mapErrors, toConnectError } from "./errors.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { dispatchTraced } from "./tracing.js";
import * as v from "./validate.js";

const SORT_COLUMN: Record<ActiveSortField, ActiveSortColumn> = {
  [ActiveSortField.UNSPECIFIED]: "created_at",
  [ActiveSortField.ID]: "id",
  [ActiveSortField.STATUS]: "status",
  [ActiveSortField.TITLE]: "title",
  [ActiveSortField.CREATED_AT]: "created_at",
  [ActiveSortField.STARTED_AT]: "started_at",
  [ActiveSortField.ATTEMPTS]: "attempts",
  [ActiveSortField.PRIORITY]: "priority",
  [ActiveSortField.TYPE]: "type",
  [ActiveSortField.ORIGIN]: "origin",
};

export function taskQueueService(engine: Engine, log: Logger): ServiceImpl<typeof TaskQueue> {
  const watchers = new PerConnection(v.LIMITS.watchersPerConnection);
  return {
    // Both run in a taskq.dispatch span and store its trace context with the tasks (rpc/tracing.ts).
    dispatch: mapErrors(log, (req, ctx) =>
      dispatchTraced(
        ctx.requestHeader,
        { "rpc.method": "Dispatch", "taskq.task.type": req.type, "taskq.queue": req.queue || "default" },
        async (trace) => {
          const [result] = await engine.dispatch([v.dispatchRequest(req, "", trace)]);
          return { taskId: result.id, created: result.created };
        },
        (r) => ({ "taskq.task.id": r.taskId, "taskq.task.created": r.created }),
      ),
    ),

    dispatchBatch: mapErrors(log, (req, ctx) =>
      dispatchTraced(
        ctx.requestHeader,
        { "rpc.method": "DispatchBatch", "taskq.task.count": req.tasks.length },
        async (trace) => {
          if (req.tasks.length === 0) throw invalidArgument("tasks: at least one task is required");
          if (req.tasks.length > v.LIMITS.batchSize) throw invalidArgument(`tasks: at most ${v.LIMITS.batchSize} per batch`);
          const inputs = req.tasks.map((t, i) => v.dispatchRequest(t, `tasks[${i}].`, trace));
          const results = await engine.dispatch(inputs);
          return { results: results.map((r) => ({ taskId: r.id, created: r.created })) };
        },
        (r) => ({ "taskq.task.created": r.results.filter((t) => t.created).length }),
      ),
    ),

    status: mapErrors(log, async (req) => {
      const task = await engine.status(v.taskId("task_id", req.taskId));
      return { task: taskToPb(task, { log: task.log, untitled: "from_type" }) };
    }),

    async *watchTask(req, ctx) {
      const conn = ctx.values.get(CONNECTION);
      if (!watchers.take(conn)) {
        throw new ConnectError(`at most ${v.LIMITS.watchersPerConnection} WatchTask streams per connection`, Code.ResourceExhausted);
      }
      try {
        const id = v.taskId("task_id", req.taskId);
        for await (const event of engine.watch(id, Number(req.afterSeq), ctx.signal)) yield watchEventToPb(event);
      } catch (err) {
        throw toConnectError(err, log);
      } finally {
        watchers.give(conn);
      }
    },

    interrupt: mapErrors(log, async (req) => {
      const id = v.taskId("task_id", req.taskId);
      const reason = v.text("reason", req.reason, v.LIMITS.titleLength);
      const status = await engine.interrupt(id, reason);
      return { status: status === "canceled" ? TaskStatus.CANCELED : TaskStatus.CANCELLING };
    }),

    listActive: mapErrors(log, async (req) => {
      const sortBy = SORT_COLUMN[v.enumValue("sort_by", req.sortBy, ActiveSortField)];
      const limit = v.pageSize("page_size", req.pageSize);
      const after = req.pageToken ? activeCursor(req.pageToken, sortBy, req.descending) : null;
      const { tasks, sortValues } = await engine.listActive({
        id: req.id ? v.taskId("id", req.id) : null,
        titleSearch: v.text("title_search", req.titleSearch, v.LIMITS.titleLength) || null,
        type: v.name("type", req.type, false) || null,
        typePrefix: v.name("type_prefix", req.typePrefix, false) || null,
        queue: v.name("queue", req.queue, false) || null,
        statuses: v.statuses("statuses", req.statuses, ["pending", "running", "cancelling"]) as ActiveStatus[],
        createdAfter: v.timestamp("created_after", req.createdAfter) ?? null,
        createdBefore: v.timestamp("created_before", req.createdBefore) ?? null,
        sortBy,
        descending: req.descending,
        limit,
        after,
      });
      const last = tasks.length === limit ? { sort: cursorSort(sortBy, req.descending), value: sortValues.at(-1)!, id: tasks.at(-1)!.id } : null;
      return { tasks: tasks.map((t) => taskToPb(t, { untitled: "untitled" })), nextPageToken: last ? encodePageToken(last) : "" };
    }),

    listQueues: mapErrors(log, async () => {
      const { queues, globalMaxWorkers, running } = await engine.listQueues();
      return { queues: queues.map(queueToPb), globalMaxWorkers: globalMaxWorkers ?? undefined, running };
    }),

    pauseQueue: mapErrors(log, async (req) => ({
      queue: queueToPb(await engine.setQueuePaused(v.name("queue", req.queue, true), true)),
    })),

    resumeQueue: mapErrors(log, async (req) => ({
      queue: queueToPb(await engine.setQueuePaused(v.name("queue", req.queue, true), false)),
    })),

    listSchedules: mapErrors(log, async () => ({ schedules: (await engine.listSchedules()).map(scheduleToPb) })),

    listWorkers: mapErrors(log, async () => ({ workers: (await engine.listWorkers()).map(workerToPb) })),

    retry: mapErrors(log, async (req, ctx) => {
      const result = await engine.retry(v.taskId("task_id", req.taskId), actorOf(ctx.values));
      return { taskId: result.id, created: result.created };
    }),

    interruptMany: mapErrors(log, (req, ctx) =>
      engine.interruptMany({
        filter: v.taskFilter("filter", req.filter, ["pending", "running"]),
        limit: v.bulkLimit("limit", req.limit),
        dryRun: req.dryRun,
        reason: v.text("reason", req.reason, v.LIMITS.titleLength),
        actor: actorOf(ctx.values),
      }),
    ),

    retryMany: mapErrors(log, (req, ctx) =>
      engine.retryMany({
        filter: v.taskFilter("filter", req.filter, ["failed", "canceled", "stuck"]),
        limit: v.bulkLimit("limit", req.limit),
        dryRun: req.dryRun,
        actor: actorOf(ctx.values),
      }),
    ),

    listAudit: mapErrors(log, async (req) => {
      const limit = v.pageSize("page_size", req.pageSize);
      const beforeId = req.pageToken ? auditCursor(req.pageToken) : null;
      const entries = await engine.listAudit({ limit, beforeId });
      const last = entries.length === limit ? entries.at(-1)! : null;
      return { entries: entries.map(auditEntryToPb), nextPageToken: last ? encodePageToken({ id: last.id }) : "" };
    }),

    countTasks: mapErrors(log, async (req) => {
      const origin = v.enumValue("origin", req.origin, Origin);
      const counts = await engine.countTasks({
        queue: v.name("queue", req.queue, false) || null,
        typePrefix: v.name("type_prefix", req.typePrefix, false) || null,
        origin: origin === Origin.USER ? "user" : origin === Origin.SYSTEM ? "system" : null,
      });
      return { counts: counts.map((c) => ({ status: STATUS_TO_PB[c.status], count: c.count, more: c.more })) };
    }),

    getStats: mapErrors(log, async (req) => {
      const { samples, intervalMs } = await engine.stats(v.statsWindow("window", req.window), v.name("queue", req.queue, false) || null);
      return { samples: samples.map(statsSampleToPb), interval: durationFromMs(intervalMs) };
    }),

    listHistory: mapErrors(log, async (req) => {
      const origin = v.enumValue("origin", req.origin, Origin);
      const limit = v.pageSize("page_size", req.pageSize);
      const after = req.pageToken ? historyCursor(req.pageToken) : null;
      const tasks = await engine.listHistory({
        origin: origin === Origin.USER ? "user" : origin === Origin.SYSTEM ? "system" : null,
        statuses: v.statuses("statuses", req.statuses, ["running", "cancelling", "completed", "failed", "canceled", "stuck"]),
        type: v.name("type", req.type, false) || null,
        typePrefix: v.name("type_prefix", req.typePrefix, false) || null,
        queue: v.name("queue", req.queue, false) || null,
        createdAfter: v.timestamp("created_after", req.createdAfter) ?? null,
        createdBefore: v.timestamp("created_before", req.createdBefore) ?? null,
        limit,
        after,
      });
      const last = tasks.length === limit ? tasks.at(-1)! : null;
      return {
        tasks: tasks.map((t) => taskToPb(t, { untitled: "from_type" })),
        nextPageToken: last ? encodePageToken({ createdAt: last.createdAt.toISOString(), id: last.id }) : "",
      };
    }),
  };
}

/** A timestamptz as Postgres prints it in ISO DateStyle, or -infinity (a waiting task's start). */
const PG_TIMESTAMP = /^(-infinity|\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2})?)$/;

const cursorSort = (column: ActiveSortColumn, descending: boolean) => `${column}:${descending ? "desc" : "asc"}`;

/** The position after which the next Active page starts; refused if made for another sort order. */
function activeCursor(token: string, column: ActiveSortColumn, descending: boolean) {
  const c = decodePageToken("page_token", token, ["sort", "value", "id"]);
  if (c.sort !== cursorSort(column, descending)) throw invalidArgument("page_token: made for another sort order");
  v.taskId("page_token", c.id);
  const bad =
    ((column === "created_at" || column === "started_at") && !PG_TIMESTAMP.test(c.value)) ||
    ((column === "id" || column === "attempts" || column === "priority" || column === "status") && !/^-?\d{1,19}$/.test(c.value));
  if (bad) throw invalidArgument("page_token: not a page token from this list");
  return { value: c.value, id: c.id };
}

function auditCursor(token: string): string {
  const { id } = decodePageToken("page_token", token, ["id"]);
  if (!/^[1-9][0-9]{0,18}$/.test(id)) throw invalidArgument("page_token: not a page token from this list");
  return id;
}

function historyCursor(token: string) {
  const c = decodePageToken("page_token", token, ["createdAt", "id"]);
  const createdAt = new Date(c.createdAt);
  if (Number.isNaN(createdAt.getTime())) throw invalidArgument("page_token: not a page token from this list");
  return { createdAt, id: v.taskId("page_token", c.id) };
}

function watchEventToPb(event: WatchEvent): WatchTaskResponse {
  switch (event.kind) {
    case "snapshot":
      return create(WatchTaskResponseSchema, { event: { case: "snapshot", value: taskToPb(event.task, { log: event.log, untitled: "from_type" }) } });
    case "log":
      return create(WatchTaskResponseSchema, { event: { case: "logEntry", value: logEntryToPb(event.entry) } });
    case "status_value":
      return create(WatchTaskResponseSchema, {
        event: { case: "statusValue", value: { key: event.key, value: valueToPb(event.value) } },
      });
    case "status": {
      const { change, task } = event;
      const result = change.status === "completed" && task.result !== undefined ? valueToPb(task.result) : undefined;
      return create(WatchTaskResponseSchema, {
        event: {
          case: "statusChange",
          value: {
            status: STATUS_TO_PB[change.status],
            attempts: change.attempts,
            worker: change.worker,
            result,
            error: change.error,
            time: timestampFromDate(change.at),
          },
        },
      });
    }
  }
}
