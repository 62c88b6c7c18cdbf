/**
 * Built-in maintenance: schedules every server declares, and the handlers the server's own worker
 * runs for them. They appear in history like any scheduled task.
 *
 *   taskq.history-retention   daily at 02:00 UTC: deletes tasks that finished more than the retention
 *                             period ago, with their log steps, idempotency keys and schedule runs, and
 *                             the audit log's entries older than that
 *   taskq.temp-cleanup        hourly: run by SDK workers, which delete their expired temp directories
 */
import type { Clock } from "./clock.js";
import type { ScheduleConfig } from "./settings.js";
import type { Db } from "./sql/db.js";
import { auditDeleteBefore, historyDeleteFinishedBefore } from "./sql/retention.js";
import type { SystemHandler } from "./system-worker.js";

const HISTORY_RETENTION_TYPE = "taskq.history-retention";
/** Handled by SDK workers: @taskq/protocol's TEMP_CLEANUP_TYPE (the engine imports nothing of the protocol; a test checks they agree). */
export const TEMP_CLEANUP_TYPE = "taskq.temp-cleanup";
export const DEFAULT_HISTORY_RETENTION_DAYS = 30;

const DELETE_BATCH = 1_000;

export const BUILTIN_SCHEDULES: ScheduleConfig[] = [
  { name: HISTORY_RETENTION_TYPE, cron: "0 2 * * *", type: HISTORY_RETENTION_TYPE, title: "History retention" },
  { name: TEMP_CLEANUP_TYPE, cron: "0 * * * *", type: TEMP_CLEANUP_TYPE, title: "Expired temp directory cleanup" },
];

/** The handlers of the built-in types the server runs itself. */
export function maintenanceHandlers(deps: { db: Db; clock: Clock; retentionDays: number }): Record<string, SystemHandler> {
  return {
    async [HISTORY_RETENTION_TYPE]({ log, signal }) {
      const before = new Date(deps.clock.now().getTime() - deps.retentionDays * 86_400_000);
      let tasks = 0;
      let logSteps = 0;
      for (;;) {
        const batch = await historyDeleteFinishedBefore(deps.db, before, DELETE_BATCH);
        tasks += batch.tasks;
        logSteps += batch.logSteps;
        if (batch.tasks < DELETE_BATCH || signal.aborted) break;
      }
      await log(`deleted ${tasks} tasks that finished before ${before.toISOString()}, with ${logSteps} log steps`);
      let auditEntries = 0;
      for (;;) {
        const deleted = await auditDeleteBefore(deps.db, before, DELETE_BATCH);
        auditEntries += deleted;
        if (deleted < DELETE_BATCH || signal.aborted) break;
      }
      await log(`deleted ${auditEntries} audit log entries made before ${before.toISOString()}`);
      return { deletedTasks: tasks, deletedLogSteps: logSteps, deletedAuditEntries: auditEntries, finishedBefore: before.toISOString() };
    },
  };
}
