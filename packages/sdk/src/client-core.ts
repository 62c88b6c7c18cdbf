/**
 * TaskClient: dispatch tasks and follow them. `dispatch` returns a TaskHandle whose `result()` waits
 * for the outcome, `watch()` streams every change, `interrupt()` stops the task and `retry()` runs a
 * failed one again as a new task. Operators interrupt or retry many tasks at once (interruptMany,
 * retryMany) and read the audit log of what was done (listAudit). Every method takes and returns the
 * SDK's own types (types.ts, lists.ts, bulk.ts) and rejects with a TaskqError.
 *
 * This is the client on any connect Transport, with nothing from Node: the entry for browsers and
 * other runtimes ("@taskq/sdk/client"). The Node entry's TaskClient (client.ts) adds connecting by URL.
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { DispatchRequestSchema, Origin, RetryBackoff, TaskQueue } from "@taskq/protocol";
import {
  auditEntryFromPb,
  taskFilterToPb,
  type AuditPage,
  type BulkOptions,
  type BulkResult,
  type InterruptManyOptions,
  type ListAuditOptions,
  type TaskFilter,
} from "./bulk.js";
import { Code, TaskFailedError, TaskqError, call } from "./errors.js";
import { DispatchMerger } from "./internal/dispatch-merger.js";
import { resumingWatch } from "./internal/resuming-watch.js";
import { listActiveRequest, listHistoryRequest, type ListActiveOptions, type ListHistoryOptions, type TaskPage } from "./lists.js";
import {
  countTasksRequest,
  getStatsRequest,
  statsFromPb,
  statusCountsFromPb,
  type CountTasksOptions,
  type GetStatsOptions,
  type Stats,
  type StatusCount,
} from "./stats.js";
import {
  isFinalStatus,
  queueFromPb,
  scheduleFromPb,
  statusName,
  taskFromPb,
  watchEventFromPb,
  workerFromPb,
  type JsonValue,
  type QueueInfo,
  type QueueList,
  type ScheduleInfo,
  type TaskInfo,
  type TaskOrigin,
  type WatchEvent,
  type WorkerInfo,
} from "./types.js";

export interface DispatchOptions {
  queue?: string;
  title?: string;
  priority?: number;
  origin?: TaskOrigin;
  initiator?: string;
  nodeId?: string;
  timeoutMs?: number;
  maxAttempts?: number;
  retryDelayMs?: number;
  backoff?: "fixed" | "exponential";
  /** Run no sooner than this long after dispatch. */
  delayMs?: number;
  /** Run no sooner than this time. */
  runAt?: Date;
  /** Dispatching the same key again returns the first task instead of queuing another. */
  idempotencyKey?: string;
  /** Whose work this is within its queue, such as a tenant or customer id (at most 200 characters). */
  concurrencyKey?: string;
}

export interface WatchOptions {
  /** Start after this log step, one seen before (its seq); default 0: the snapshot carries the whole log. */
  afterSeq?: number;
  /** Stops watching: the iterator just ends. */
  signal?: AbortSignal;
}

export interface DispatchItem extends DispatchOptions {
  type: string;
  params?: JsonObject;
}

export interface MergeOptions {
  /**
   * Send dispatch() calls made at the same moment (before the microtask queue empties) as one
   * DispatchBatch, each getting the answer a call of its own would get: a batch the server refuses as
   * invalid is sent again call by call, so that only the bad call fails; a call inside an active
   * OpenTelemetry span goes alone. Default true; false sends every call as a Dispatch of its own.
   */
  mergeDispatches?: boolean;
}

export class TaskClient {
  /**
   * The escape hatch: the raw TaskQueue client the methods above are made of, on the same transport,
   * for a call or field the SDK does not wrap. It speaks the generated wire types of @taskq/protocol,
   * which follow the .proto and are not part of the SDK's API; its errors are connect's ConnectError.
   */
  readonly rpc: Client<typeof TaskQueue>;

  /** Sends concurrent dispatch() calls as one DispatchBatch; null when the client was made with mergeDispatches: false. */
  private readonly merger: DispatchMerger | null;

  constructor(opts: { transport: Transport } & MergeOptions) {
    this.rpc = createClient(TaskQueue, opts.transport);
    this.merger = opts.mergeDispatches === false ? null : new DispatchMerger(this.rpc);
  }

  /**
   * Queues one task and returns its handle. Calls made at the same moment from one client go to the
   * server together, as one DispatchBatch (see MergeOptions); each still gets its own answer.
   */
  async dispatch(type: string, params: JsonObject = {}, opts: DispatchOptions = {}): Promise<TaskHandle> {
    const request = dispatchRequest({ ...opts, type, params });
    const res = await call(() => (this.merger ? this.merger.dispatch(request, JSON.stringify(params).length) : this.rpc.dispatch(request)));
    return new TaskHandle(this, res.taskId, res.created);
  }

  /** Queues many tasks in one round trip; all or none. Handles come back in the same order. */
  async dispatchBatch(items: DispatchItem[]): Promise<TaskHandle[]> {
    const res = await call(() => this.rpc.dispatchBatch({ tasks: items.map(dispatchRequest) }));
    return res.results.map((r) => new TaskHandle(this, r.taskId, r.created));
  }

  /** A handle for a task dispatched earlier. */
  handle(id: string): TaskHandle {
    return new TaskHandle(this, id, false);
  }

  async status(id: string): Promise<TaskInfo> {
    const res = await call(() => this.rpc.status({ taskId: id }));
    return taskFromPb(res.task!);
  }

  /**
   * A snapshot, then every change (log steps, status values, statuses) until the task's final status.
   * A broken connection is resumed from the last log step seen, so nothing is missed or repeated.
   * `afterSeq` starts after a log step seen before; `signal` stops watching (the iterator just ends).
   */
  watch(id: string, opts: WatchOptions = {}): AsyncGenerator<WatchEvent> {
    const rpc = this.rpc;
    return resumingWatch(
      {
        async *open(afterSeq, signal) {
          for await (const res of rpc.watchTask({ taskId: id, afterSeq: BigInt(afterSeq) }, { signal })) {
            const event = watchEventFromPb(res);
            if (event) yield event;
          }
        },
      },
      opts,
    );
  }

  async interrupt(id: string, reason = ""): Promise<"canceled" | "cancelling"> {
    const res = await call(() => this.rpc.interrupt({ taskId: id, reason }));
    return statusName(res.status) === "canceled" ? "canceled" : "cancelling";
  }

  /**
   * Runs a FAILED, CANCELED or STUCK task again as a new task with the same type, queue, params and
   * settings; the new task's `retryOf` and the old one's `retriedAs` link them. A task retried before
   * gives back that retry, with `created` false. FAILED_PRECONDITION for a task still active or
   * COMPLETED. Needs an admin token when the server has auth.
   */
  async retry(id: string): Promise<TaskHandle> {
    const res = await call(() => this.rpc.retry({ taskId: id }));
    return new TaskHandle(this, res.taskId, res.created);
  }

  /**
   * Interrupts the pending and running tasks `filter` matches, as interrupt() does each, at most
   * `limit` (default 10,000) per call; `moreRemain` says to call again. `dryRun` only counts them.
   * Needs an admin token when the server has auth.
   */
  async interruptMany(filter: TaskFilter, opts: InterruptManyOptions = {}): Promise<BulkResult> {
    const req = { filter: taskFilterToPb(filter), dryRun: opts.dryRun, limit: opts.limit, reason: opts.reason };
    const res = await call(() => this.rpc.interruptMany(req));
    return { count: res.count, moreRemain: res.moreRemain };
  }

  /**
   * Retries the failed, canceled and stuck tasks `filter` matches that were not retried yet, as retry()
   * does each, at most `limit` (default 10,000) per call; `moreRemain` says to call again. `dryRun`
   * only counts them. Needs an admin token when the server has auth.
   */
  async retryMany(filter: TaskFilter, opts: BulkOptions = {}): Promise<BulkResult> {
    const req = { filter: taskFilterToPb(filter), dryRun: opts.dryRun, limit: opts.limit };
    const res = await call(() => this.rpc.retryMany(req));
    return { count: res.count, moreRemain: res.moreRemain };
  }

  /** One page of the audit log (retries and bulk actions: who, what, how many), newest first. Admin only. */
  async listAudit(opts: ListAuditOptions = {}): Promise<AuditPage> {
    const res = await call(() => this.rpc.listAudit({ pageSize: opts.pageSize, pageToken: opts.pageToken }));
    return { entries: res.entries.map(auditEntryFromPb), nextPageToken: res.nextPageToken };
  }

  /** One page of the Active list: tasks pending, running or cancelling, filtered and sorted. */
  async listActive(opts: ListActiveOptions = {}): Promise<TaskPage> {
    const req = listActiveRequest(opts);
    const res = await call(() => this.rpc.listActive(req));
    return { tasks: res.tasks.map(taskFromPb), nextPageToken: res.nextPageToken };
  }

  /** One page of the Task history: running and finished tasks, newest first, filtered. */
  async listHistory(opts: ListHistoryOptions = {}): Promise<TaskPage> {
    const req = listHistoryRequest(opts);
    const res = await call(() => this.rpc.listHistory(req));
    return { tasks: res.tasks.map(taskFromPb), nextPageToken: res.nextPageToken };
  }

  /** Every queue with its limit, waiting and running tasks, and whether it is paused; and the global limit. */
  async listQueues(): Promise<QueueList> {
    const res = await call(() => this.rpc.listQueues({}));
    return { queues: res.queues.map(queueFromPb), globalMaxWorkers: res.globalMaxWorkers ?? null, running: res.running };
  }

  /** Stops leasing the queue's tasks on every server replica; running tasks go on. */
  async pauseQueue(queue: string): Promise<QueueInfo> {
    return queueFromPb((await call(() => this.rpc.pauseQueue({ queue }))).queue!);
  }

  async resumeQueue(queue: string): Promise<QueueInfo> {
    return queueFromPb((await call(() => this.rpc.resumeQueue({ queue }))).queue!);
  }

  /** Every cron schedule with its next and last run. */
  async listSchedules(): Promise<ScheduleInfo[]> {
    return (await call(() => this.rpc.listSchedules({}))).schedules.map(scheduleFromPb);
  }

  /** Every connected worker session, on every replica, oldest connection first. */
  async listWorkers(): Promise<WorkerInfo[]> {
    return (await call(() => this.rpc.listWorkers({}))).workers.map(workerFromPb);
  }

  /** How many tasks are in each status (every status, zeros included); a count stops at 10,000 and says so. */
  async countTasks(opts: CountTasksOptions = {}): Promise<StatusCount[]> {
    const req = countTasksRequest(opts);
    return statusCountsFromPb(await call(() => this.rpc.countTasks(req)));
  }

  /** Each queue's depth and finished tasks by status, as the server sampled them over the last hour (or `windowMs`). */
  async getStats(opts: GetStatsOptions = {}): Promise<Stats> {
    const req = getStatsRequest(opts);
    return statsFromPb(await call(() => this.rpc.getStats(req)));
  }

  /** Ends what the client opened itself; a transport passed in stays the caller's to end. */
  close(): void {}
}

export class TaskHandle {
  constructor(
    private readonly client: TaskClient,
    readonly id: string,
    /** false when an idempotency key matched a task dispatched before. */
    readonly created: boolean,
  ) {}

  status(): Promise<TaskInfo> {
    return this.client.status(this.id);
  }

  /** A snapshot, then every change until the final status; see TaskClient.watch. */
  watch(opts: WatchOptions = {}): AsyncGenerator<WatchEvent> {
    return this.client.watch(this.id, opts);
  }

  /**
   * Waits for the final status: resolves with the result when the task COMPLETED, rejects with
   * TaskFailedError (carrying the status and the task) when it ended FAILED, CANCELED or STUCK, and
   * with TaskqError when the task cannot be watched (NOT_FOUND, or the server stayed unreachable).
   * When `signal` aborts, rejects with the signal's reason.
   */
  async result<T extends JsonValue = JsonValue>(opts: { signal?: AbortSignal } = {}): Promise<T> {
    // Only the final status matters: start after the log (there is no log sequence beyond this).
    for await (const event of this.watch({ signal: opts.signal, afterSeq: Number.MAX_SAFE_INTEGER })) {
      const status = event.type === "snapshot" ? event.task.status : event.type === "status" ? event.status : null;
      if (status && isFinalStatus(status)) {
        const task = await this.status();
        if (task.status === "completed") return task.result as T;
        throw new TaskFailedError(task);
      }
    }
    opts.signal?.throwIfAborted();
    throw new TaskqError(`watching task ${this.id} ended before its final status`, Code.Internal);
  }

  interrupt(reason?: string): Promise<"canceled" | "cancelling"> {
    return this.client.interrupt(this.id, reason);
  }

  /** Runs the task again as a new one, once it FAILED, was CANCELED or is STUCK; see TaskClient.retry. */
  retry(): Promise<TaskHandle> {
    return this.client.retry(this.id);
  }
}

function dispatchRequest(item: DispatchItem) {
  return create(DispatchRequestSchema, {
    type: item.type,
    queue: item.queue,
    params: item.params,
    title: item.title,
    priority: item.priority,
    origin: item.origin === "system" ? Origin.SYSTEM : item.origin === "user" ? Origin.USER : Origin.UNSPECIFIED,
    initiator: item.initiator,
    nodeId: item.nodeId,
    timeout: item.timeoutMs === undefined ? undefined : durationFromMs(item.timeoutMs),
    maxAttempts: item.maxAttempts,
    retryDelay: item.retryDelayMs === undefined ? undefined : durationFromMs(item.retryDelayMs),
    retryBackoff:
      item.backoff === "exponential" ? RetryBackoff.EXPONENTIAL : item.backoff === "fixed" ? RetryBackoff.FIXED : RetryBackoff.UNSPECIFIED,
    delay: item.delayMs === undefined ? undefined : durationFromMs(item.delayMs),
    runAt: item.runAt ? timestampFromDate(item.runAt) : undefined,
    idempotencyKey: item.idempotencyKey,
    concurrencyKey: item.concurrencyKey,
  });
}
