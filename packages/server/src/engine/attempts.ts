/**
 * A task's attempts, read from its record of status changes (migrations 008 and 009): each running
 * change starts an attempt; the next change that is not cancelling ends it, and says how. No row of its
 * own per attempt, so recording them costs the lease and finish statements a few bytes each.
 */
import type { Attempt, AttemptOutcome, StatusChange } from "./types.js";

/** The attempts, oldest first; the last one runs while the task is running or cancelling. */
export function attemptsOf(changes: StatusChange[]): Attempt[] {
  const attempts: Attempt[] = [];
  let current: Attempt | null = null;
  for (const change of changes) {
    if (change.status === "running") {
      current = {
        number: change.attempts,
        worker: change.worker,
        replica: change.replica ?? "",
        startedAt: change.at,
        endedAt: null,
        outcome: "running",
        error: "",
      };
      attempts.push(current);
    } else if (current && change.status !== "cancelling") {
      current.endedAt = change.at;
      current.outcome = outcomeOf(change, current.number);
      current.error = current.outcome === "succeeded" ? "" : change.error;
      current = null;
    }
  }
  return attempts;
}

/** How the attempt numbered `attempt` ended, from the change that ended it. */
function outcomeOf(change: StatusChange, attempt: number): AttemptOutcome {
  switch (change.status) {
    case "completed":
      return "succeeded";
    case "failed":
      return "failed";
    case "canceled":
      return "canceled";
    case "stuck":
      // Only a timeout or a lost worker ends a task STUCK; before migration 009 only the error tells them apart.
      if (change.ended) return change.ended === "timeout" ? "timed_out" : "lost";
      return /^attempt \d+ timed out after /.test(change.error) ? "timed_out" : "lost";
    default:
      switch (change.ended) {
        case "finish":
          return "failed";
        case "timeout":
          return "timed_out";
        case "lost":
          return "lost";
        case "shutdown":
        case "declined":
        case "undelivered":
          return "given_back";
        case "snoozed":
          return "snoozed";
        default:
          // Recorded before migration 009: an attempt given back left the count below its number.
          return change.attempts < attempt ? "given_back" : "failed";
      }
  }
}
