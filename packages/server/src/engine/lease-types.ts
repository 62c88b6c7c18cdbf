/** What the lease dispatcher and the claim take and return, and what ends a lease (types only). */
import type { FinalStatus, LeasedTask, Outcome } from "./types.js";

/** Sessions that accept the same task types from the same queues, and their free credits. */
export interface LeaseGroup {
  types: string[];
  /** null: every queue. */
  queues: string[] | null;
  /** One session id per free credit, interleaved so leases spread over the sessions. */
  slots: string[];
}

/** How many tasks may run at once, per queue, per key and in all, across every worker and replica. */
export interface QueueLimits {
  /** Queue name → max_workers, for queues that have a limit. */
  queues: Record<string, number>;
  /** Queue name → max_running_per_key (tasks of one concurrency key running at once), for queues that have one. */
  perKey: Record<string, number>;
  /** Queue name → its rate limits, for queues that have one. */
  rates: RateLimits;
  /** global_max_workers; null when there is none. */
  global: number | null;
}

/**
 * A token bucket: `tasks` tokens added per `perMs`, at most `burst` held; a task starts with one. In any
 * window of `perMs`, at most `tasks + burst` tasks start (`tasks + 1` with the default burst of 1).
 */
export interface RateLimit {
  tasks: number;
  perMs: number;
  burst: number;
}

/** Queue name → the token buckets of the whole queue and of each of its keys (null: none). */
export type RateLimits = Record<string, { queue: RateLimit | null; key: RateLimit | null }>;

/** How queues share their leases among keys: in turns, some keys weighted, urgent tasks first. */
export interface KeyShares {
  /** Queue name → key → turns per round (key_weights), for keys weighted other than 1. */
  weights: Record<string, Record<string, number>>;
  /** Queue name → the priority at and above which a task is leased before any key's turn (urgent_priority). */
  urgentPriority: Record<string, number>;
}

/**
 * Per task type, the (queue, key) pair where the last claim's turns stopped ("" for the queue's unkeyed
 * tasks), and how many of that pair's weighted turns of the round it had taken: the next claim's walk
 * starts after it, or at it while turns are left.
 */
export type KeyCursors = Record<string, [queue: string, key: string, spent: number]>;

/** What one claim leased, and where the next claim's walk over keys starts. */
export interface Claimed {
  leases: LeasedTask[];
  /** Types whose walk moved on; others start where they did. */
  cursors: KeyCursors;
  /**
   * More may be claimable than this claim looked at: its walk stopped at its bound before it had seen
   * every key, or it did not walk the keys and keyed tasks wait.
   */
  capped: boolean;
  /** In how many ms a rate limit that holds tasks back (or may) gets its next token; null: none does. */
  rateWaitMs: number | null;
  /** The claimed types with keyed tasks pending: claims of them must walk the keys (see ClaimShape). */
  keyedTypes: string[];
}

/** Fallback timeouts, for tasks dispatched without one whose worker declared none for their type. */
export interface LeaseTimeouts {
  /** Task type → timeout in ms, from config. */
  types: Record<string, number>;
  /** Queue name → timeout in ms, for queues that set one. */
  queues: Record<string, number>;
  defaultMs: number;
}

/**
 * The queues where a task leaving a worker frees a limited slot, so other replicas' dispatchers must
 * hear of it (NOTIFY taskq_dispatch); null when a global limit makes every queue count; [] for none.
 */
export type WakeOnFree = string[] | null;

/** A worker's outcome for the attempt its lease token names. */
export interface FinishInput {
  id: string;
  leaseToken: string;
  outcome: Outcome;
}

/** A lease to end because its worker is gone. */
export interface ReleaseInput {
  id: string;
  leaseToken: string;
}

/** Where a task went when an attempt ended: back to the queue, or a final status. */
export type FinishedAs = "pending" | FinalStatus;
