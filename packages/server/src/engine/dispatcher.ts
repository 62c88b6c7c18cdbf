/**
 * The lease dispatcher of one replica: it owns the free credits of every worker session here and
 * fills them from the queue.
 *
 * States: idle (no claim running) → claiming (one taskLeaseAvailable for all sessions at once) → idle.
 * A wake-up while claiming sets `again`, so the claim loop runs once more instead of running twice in
 * parallel. Wake-ups come from NOTIFY (new tasks, tasks back in the queue), from sessions granting
 * credits, and from one timer: the next delayed task's due time, capped by the poll interval as a
 * safety net. A retry's due time arrives by NOTIFY ("@<ms>") and moves the timer sooner, so a short
 * retry delay is honoured to the millisecond, not at the next poll. No per-task timers, no tight polling.
 *
 * Queue limits: a claim that can reach a queue with a worker limit runs in a transaction holding the
 * limit locks (four round trips instead of one). It is needed only while such a queue may have
 * claimable work, which the dispatcher tracks: new tasks' notifications name their queues, and any
 * other wake-up (tasks back in the queue, a freed slot, the timer, a reconnect) counts as "maybe".
 * Once a locked claim leaves credits unfilled with no such news meanwhile, the limited queues have
 * nothing claimable, and claims skip them (and the locks) until news comes.
 *
 * Keys: a queue with max_running_per_key takes the limit lock like one with max_workers. The claim
 * gives the (queue, key) pairs with due work turns (sql/claim.ts); the dispatcher keeps, per type, where
 * the last claim's turns stopped, so the next one goes on from there and every key's turn comes round.
 * A claim that stopped walking the keys at its bound and leased nothing is followed by another, a few
 * times at most, before the dispatcher waits for news.
 *
 * Credits are taken at delivery. A lease whose session left while the claim was in flight, or whose
 * session's leases lapsed meanwhile (this replica stalled), goes back to the queue with its attempt
 * uncounted: it never reached a worker.
 */
import type pg from "pg";
import type { Logger } from "pino";
import type { Clock } from "./clock.js";
import { taskLeaseAvailable } from "./sql/claim.js";
import { taskLeaseRelease, taskNextDueAt } from "./sql/lease.js";
import { queueLimitLocksTake } from "./sql/queues.js";
import { withTransaction } from "./sql/db.js";
import { retryWhileUnreachable } from "./errors.js";
import type { Meter } from "./meter.js";
import { limitedQueues } from "./settings.js";
import type { Claimed, KeyCursors, KeyShares, LeasedTask, LeaseGroup, LeaseTimeouts, QueueLimits, WakeOnFree } from "./types.js";

export interface SessionSlot {
  readonly id: string;
  readonly types: string[];
  /** null: every queue. */
  readonly queues: string[] | null;
  credits: number;
  /** When the session last got a lease, by the dispatcher's count of deliveries (0: never). */
  servedAt: number;
  /** Hands the lease to the worker; false when the session can no longer take it (closed, or its leases lapsed). */
  deliver(lease: LeasedTask): boolean;
}

const RETRY_AFTER_ERROR_MS = 1_000;
/** The most leases one claim hands to one group; the claim loop runs again for the rest. */
const MAX_LEASES_PER_GROUP = 500;
/** Claims in a row that may run on without leasing anything, each walking further round the keys (see Claimed.capped). */
const MAX_EMPTY_WALKS = 8;

export class LeaseDispatcher {
  private readonly slots = new Map<string, SessionSlot>();
  private claiming = false;
  /** Leases delivered so far: the clock of SessionSlot.servedAt. */
  private deliveries = 0;
  private again = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  /** The time the last claim used as "now": tasks due after it were not claimable then. */
  private claimedAt: Date | null = null;
  /** When the timer fires (Date.now() ms). */
  private timerAt = 0;
  /** The earliest due time announced while a claim ran (epoch ms), for the timer it sets after. */
  private dueDuringClaim = Infinity;
  /** Bumped on every sign that a limited queue may have claimable work. */
  private limitedNews = 1;
  /** The news a locked claim had seen when it found nothing more to claim in limited queues. */
  private limitedSettledAt = 0;
  /** Where each type's next walk over keys starts: round-robin across this replica's claims. */
  private cursors: KeyCursors = {};
  /** Claims in a row that leased nothing but stopped their walk over keys at its bound. */
  private emptyWalks = 0;
  /** When a rate limit that held tasks back during this run gets its next token (epoch ms). */
  private tokenAt = Infinity;
  /**
   * Task types the last claim of them found without keyed tasks: a claim whose types are all here reads
   * unkeyed tasks only, a cheaper statement; one that finds keyed tasks waiting takes the type out.
   */
  private readonly unkeyedTypes = new Set<string>();

  constructor(
    private readonly db: pg.Pool,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: {
      pollIntervalMs: number;
      timeouts: LeaseTimeouts;
      limits: QueueLimits;
      shares: KeyShares;
      wakeOnFree: WakeOnFree;
      meter: Meter;
    },
  ) {}

  add(slot: SessionSlot): void {
    this.slots.set(slot.id, slot);
    this.wake();
  }

  remove(id: string): void {
    this.slots.delete(id);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /**
   * A dispatch notification: `queues` lists the queues that got tasks ("" when the sender does not
   * say, such as a task back in the queue or a freed slot), or "@<epoch ms>" when a task becomes due.
   */
  workArrived(queues: string): void {
    if (queues.startsWith("@")) {
      this.dueAt(Number(queues.slice(1)));
      return;
    }
    const limited = limitedQueues(this.opts.limits);
    if (limited === null || queues === "" || queues.split(",").some((q) => limited.includes(q))) this.limitedNews++;
    this.wake();
  }

  /**
   * A task becomes due at `atMs` (epoch ms, the database's clock, which the engine's clock follows):
   * claim then. Without free credits nothing waits for it; the claim that credits start arms the timer.
   */
  private dueAt(atMs: number): void {
    if (this.stopped || !Number.isFinite(atMs)) return;
    const inMs = atMs - this.clock.now().getTime();
    if (inMs <= 0) {
      this.workArrived("");
      return;
    }
    if (this.claiming) this.dueDuringClaim = Math.min(this.dueDuringClaim, atMs);
    else if (this.hasCredits()) this.armTimer(inMs);
  }

  /** Claims in `inMs`, unless the timer already fires sooner. */
  private armTimer(inMs: number): void {
    const at = Date.now() + inMs;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.workArrived("");
    }, inMs);
    this.timerAt = at;
  }

  /** Something may be claimable: claim now, or right after the claim in flight. */
  wake(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    void this.run();
  }

  private async run(): Promise<void> {
    this.claiming = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    let retryInMs: number | null = null;
    this.emptyWalks = 0;
    try {
      do {
        this.again = false;
        const { leased, capped } = await this.claimOnce();
        // More may be waiting; stop when a claim comes back empty, unless it stopped its walk over keys
        // short of the end, a few times at most.
        this.emptyWalks = leased > 0 || !capped ? 0 : this.emptyWalks + 1;
        if (leased > 0 || (capped && this.emptyWalks < MAX_EMPTY_WALKS)) this.again = true;
      } while (this.again && !this.stopped && this.hasCredits());
      if (!this.stopped && this.hasCredits()) retryInMs = await this.untilNextDue();
      // A due time announced while claiming may postdate the database read above; a task held by a rate
      // limit is claimed when its token comes.
      const soonest = Math.min(this.dueDuringClaim, this.tokenAt);
      if (retryInMs !== null && soonest < Infinity) {
        retryInMs = Math.max(1, Math.min(retryInMs, soonest - this.clock.now().getTime()));
      }
    } catch (err) {
      this.log.error({ err }, "claiming tasks failed; retrying");
      retryInMs = RETRY_AFTER_ERROR_MS;
    } finally {
      this.claiming = false;
      this.dueDuringClaim = Infinity;
      this.tokenAt = Infinity;
    }
    if (this.stopped) return;
    if (this.again && this.hasCredits()) return this.wake();
    if (retryInMs !== null) this.armTimer(retryInMs);
  }

  private hasCredits(): boolean {
    for (const s of this.slots.values()) if (s.credits > 0) return true;
    return false;
  }

  private async claimOnce(): Promise<{ leased: number; capped: boolean }> {
    const groups = this.groups();
    if (groups.length === 0) return { leased: 0, capped: false };
    const walkedKeys = this.walksKeys(groups);
    const { leases, cursors, capped, rateWaitMs, keyedTypes } = await this.lease(groups);
    Object.assign(this.cursors, cursors);
    const keyed = new Set(keyedTypes);
    for (const type of groups.flatMap((g) => g.types)) {
      if (keyed.has(type)) this.unkeyedTypes.delete(type);
      else if (walkedKeys) this.unkeyedTypes.add(type);
    }
    if (rateWaitMs !== null) this.tokenAt = Math.min(this.tokenAt, this.clock.now().getTime() + rateWaitMs);
    const orphans: LeasedTask[] = [];
    for (const lease of leases) {
      const slot = this.slots.get(lease.sessionId);
      if (slot && slot.credits > 0 && slot.deliver(lease)) {
        slot.credits -= 1;
        slot.servedAt = ++this.deliveries;
      } else orphans.push(lease);
    }
    if (orphans.length > 0) {
      // Undelivered: they must go back, or they would sit on a session that never saw them until their
      // timeout. Through a database blip too (the reapers recover them if the database stays away).
      const wakeOnFree = this.opts.wakeOnFree;
      await retryWhileUnreachable(() => taskLeaseRelease(this.db, orphans, { how: "undelivered", error: "", wakeOnFree }, this.clock.now()), {
        minMs: 50,
        maxMs: 1_000,
        giveUp: () => this.stopped,
        onRetry: (err, retryInMs) => this.log.warn({ err: err.message, retryInMs }, "returning undelivered leases: database unreachable; trying again"),
      });
    }
    return { leased: leases.length, capped };
  }

  /**
   * One claim. When a queue limit applies to what the groups may take, the claim runs in a transaction
   * that first takes the limit locks, so claimers on other replicas count each other's leases.
   */
  private async lease(groups: LeaseGroup[]): Promise<Claimed> {
    const opts = { timeouts: this.opts.timeouts, limits: this.opts.limits, shares: this.opts.shares, cursors: this.cursors, keyed: this.walksKeys(groups) };
    const locks = limitLocks(groups, this.opts.limits);
    this.opts.meter.claimed(locks !== null && !("queues" in locks && this.limitedSettledAt === this.limitedNews));
    const now = this.clock.now();
    this.claimedAt = now;
    if (!locks) return taskLeaseAvailable(this.db, groups, opts, now);
    if ("queues" in locks && this.limitedSettledAt === this.limitedNews) {
      const excludeQueues = limitedQueues(this.opts.limits) ?? [];
      return taskLeaseAvailable(this.db, groups, { ...opts, excludeQueues }, now);
    }
    const news = this.limitedNews;
    const claimed = await withTransaction(this.db, async (client) => {
      await queueLimitLocksTake(client, locks);
      return taskLeaseAvailable(client, groups, opts, now);
    });
    if (!claimed.capped && nothingMoreClaimable(groups, claimed.leases)) this.limitedSettledAt = news;
    return claimed;
  }

  /** Whether a claim for these groups must walk the keys: one of their types may have keyed tasks. */
  private walksKeys(groups: LeaseGroup[]): boolean {
    return groups.some((g) => g.types.some((type) => !this.unkeyedTypes.has(type)));
  }

  /**
   * Sessions with free credits, grouped by what they accept, credits interleaved across sessions, the
   * least recently served first: when a claim finds fewer tasks than credits (or a group has more
   * credits than one claim takes), the sessions left out last time come first this time.
   */
  private groups(): LeaseGroup[] {
    const byKind = new Map<string, SessionSlot[]>();
    for (const s of this.slots.values()) {
      if (s.credits <= 0) continue;
      const key = JSON.stringify([[...s.types].sort(), s.queues && [...s.queues].sort()]);
      byKind.get(key)?.push(s) ?? byKind.set(key, [s]);
    }
    return [...byKind.values()].map((sessions) => {
      sessions.sort((a, b) => a.servedAt - b.servedAt);
      const slots: string[] = [];
      const most = Math.max(...sessions.map((s) => s.credits));
      for (let round = 0; round < most && slots.length < MAX_LEASES_PER_GROUP; round++) {
        for (const s of sessions) if (round < s.credits) slots.push(s.id);
      }
      return { types: sessions[0].types, queues: sessions[0].queues, slots: slots.slice(0, MAX_LEASES_PER_GROUP) };
    });
  }

  private async untilNextDue(): Promise<number> {
    const types = [...new Set([...this.slots.values()].flatMap((s) => (s.credits > 0 ? s.types : [])))];
    // Tasks due after the last claim's "now", not after this moment's: one that came due in between was
    // not claimed, and waits 1 ms, not a poll interval.
    const now = this.clock.now();
    const due = await taskNextDueAt(this.db, types, this.claimedAt ?? now);
    const wait = due ? due.getTime() - now.getTime() : this.opts.pollIntervalMs;
    return Math.max(1, Math.min(wait, this.opts.pollIntervalMs));
  }
}

/**
 * Whether a claim took everything claimable: every group got fewer leases than it had credits. Groups
 * whose task types overlap can take each other's tasks and leave a slot empty while work remains, so
 * then nothing can be concluded.
 */
function nothingMoreClaimable(groups: LeaseGroup[], leases: LeasedTask[]): boolean {
  const types = groups.flatMap((g) => g.types);
  if (new Set(types).size < types.length) return false;
  const groupOf = new Map(groups.flatMap((g, i) => g.slots.map((slot) => [slot, i] as const)));
  const got = groups.map(() => 0);
  for (const lease of leases) got[groupOf.get(lease.sessionId) ?? 0]++;
  return groups.every((g, i) => got[i] < g.slots.length);
}

/** The limit locks a claim for these groups needs, or null when no limit applies to what they may take. */
function limitLocks(groups: LeaseGroup[], limits: QueueLimits): { global: true } | { queues: string[] } | null {
  const limited = limitedQueues(limits);
  if (limited === null) return { global: true };
  const reachable = new Set(groups.flatMap((g) => (g.queues === null ? limited : g.queues.filter((q) => limited.includes(q)))));
  return reachable.size > 0 ? { queues: [...reachable] } : null;
}
