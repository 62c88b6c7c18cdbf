/**
 * Prometheus metrics of one replica, in the text exposition format (served at /metrics).
 *
 * Counters and histograms count what this replica did (sum them over replicas in PromQL); the queue
 * gauges are read from the database at scrape time, so every replica reports the same queue figures.
 * When the database does not answer, the scrape still succeeds: taskq_database_up is 0 and the queue
 * gauges are left out.
 */
import type { AttemptEnd, Engine, FinishedAs, Meter, QueueInfo } from "./engine/index.js";

type Labels = Record<string, string>;

const labelKey = (labels: Labels) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`)
    .join(",");

class Counter {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) lines.push(`${this.name} 0`);
    for (const [key, v] of this.values) lines.push(`${this.name}${key ? `{${key}}` : ""} ${v}`);
    return lines;
  }
}

class Histogram {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, private readonly buckets: number[]) {}
  observe(value: number, labels: Labels = {}): void {
    const key = labelKey(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.series) {
      const with_ = (le: string) => `{${key ? `${key},` : ""}le="${le}"}`;
      for (const [i, b] of this.buckets.entries()) lines.push(`${this.name}_bucket${with_(String(b))} ${s.counts[i]}`);
      lines.push(`${this.name}_bucket${with_("+Inf")} ${s.count}`);
      lines.push(`${this.name}_sum${key ? `{${key}}` : ""} ${s.sum}`);
      lines.push(`${this.name}_count${key ? `{${key}}` : ""} ${s.count}`);
    }
    return lines;
  }
}

/** This process's memory, by the names Prometheus client libraries use. */
function processGauges(): string[] {
  const m = process.memoryUsage();
  return [
    ...gauge("process_resident_memory_bytes", "Resident memory size in bytes.", [[{}, m.rss]]),
    ...gauge("nodejs_heap_size_used_bytes", "V8 heap in use, in bytes.", [[{}, m.heapUsed]]),
    ...gauge("nodejs_external_memory_bytes", "Memory outside the V8 heap held by JavaScript objects (buffers), in bytes.", [[{}, m.external]]),
  ];
}

function gauge(name: string, help: string, samples: [Labels, number][]): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...samples.map(([l, v]) => `${name}${Object.keys(l).length ? `{${labelKey(l)}}` : ""} ${v}`)];
}

const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

export class Metrics implements Meter {
  private readonly dispatchedTotal = new Counter("taskq_tasks_dispatched_total", "Tasks queued by Dispatch and DispatchBatch on this replica.");
  private readonly finishedTotal = new Counter("taskq_tasks_finished_total", "Tasks that reached a final status, by status.");
  private readonly retriedTotal = new Counter(
    "taskq_tasks_retried_total",
    "Attempts that ended with the task going back to the queue, by why (retry, timeout, lost worker, shutdown, declined, snoozed).",
  );
  private readonly leaseLatency = new Histogram(
    "taskq_lease_latency_seconds",
    "From a task becoming due to its lease reaching a worker.",
    SECONDS_BUCKETS,
  );
  private readonly runDuration = new Histogram(
    "taskq_run_duration_seconds",
    "From lease to finish of attempts that workers finished, by where the task went.",
    SECONDS_BUCKETS,
  );

  private readonly reconnectsTotal = new Counter(
    "taskq_database_reconnects_total",
    "Times this replica's notification connection was lost and restored.",
  );

  private readonly claimsTotal = new Counter(
    "taskq_claims_total",
    "Claim statements this replica ran, by whether they took the queue-limit locks (taken) or could skip them (skipped).",
  );

  claimed(withLimitLocks: boolean): void {
    this.claimsTotal.inc({ limit_locks: withLimitLocks ? "taken" : "skipped" });
  }

  databaseReconnected(): void {
    this.reconnectsTotal.inc();
  }

  dispatched(count: number): void {
    if (count > 0) this.dispatchedTotal.inc({}, count);
  }

  leased(waitedMs: number): void {
    this.leaseLatency.observe(Math.max(0, waitedMs) / 1000);
  }

  attemptEnded(to: FinishedAs, how: AttemptEnd, runMs: number | null): void {
    if (to === "pending") this.retriedTotal.inc({ reason: how === "finish" ? "retry" : how });
    else this.finishedTotal.inc({ status: to });
    if (runMs !== null) this.runDuration.observe(runMs / 1000, { status: to === "pending" ? "retried" : to });
  }

  /** The exposition text: this replica's counters, its connections, and the queues as the database has them now. */
  async render(engine: Engine, databaseUp: () => Promise<boolean>): Promise<string> {
    const up = await databaseUp();
    const lines = [
      ...gauge("taskq_database_up", "1 when the database answers, else 0.", [[{}, up ? 1 : 0]]),
      ...gauge("taskq_workers_connected", "Worker streams open on this replica.", [[{}, engine.sessionCount]]),
      ...gauge("taskq_watchers", "WatchTask streams open on this replica.", [[{}, engine.watcherCount]]),
      ...processGauges(),
      ...this.reconnectsTotal.render(),
      ...this.claimsTotal.render(),
      ...this.dispatchedTotal.render(),
      ...this.finishedTotal.render(),
      ...this.retriedTotal.render(),
      ...this.leaseLatency.render(),
      ...this.runDuration.render(),
    ];
    const listed = up ? await engine.listQueues().catch(() => null) : null;
    if (listed) {
      const per = (f: (q: QueueInfo) => number): [Labels, number][] => listed.queues.map((q) => [{ queue: q.name }, f(q)]);
      lines.push(
        ...gauge("taskq_queue_depth", "Pending tasks per queue (due now or later).", per((q) => q.pending)),
        ...gauge("taskq_queue_running", "Running and cancelling tasks per queue, on every replica.", per((q) => q.running)),
        ...gauge(
          "taskq_queue_oldest_due_seconds",
          "How long the oldest pending task that is due has waited since it became due, per queue; 0 when none waits (what autoscalers scale workers on).",
          per((q) => q.oldestDueMs / 1000),
        ),
        ...gauge("taskq_queue_paused", "1 when the queue is paused.", per((q) => (q.paused ? 1 : 0))),
        ...gauge("taskq_queue_max_workers", "The queue's max_workers limit (queues without one are left out).", per((q) => q.maxWorkers ?? -1).filter(([, v]) => v >= 0)),
        ...gauge("taskq_queue_keys", "Concurrency keys with tasks pending or running, per queue.", per((q) => q.keyCount)),
        ...gauge(
          "taskq_queue_held_tasks",
          "Due pending tasks held back now, per queue, by what holds them: limit=key (max_running_per_key) or limit=rate (a rate limit without a token).",
          listed.queues.flatMap((q): [Labels, number][] => [
            [{ queue: q.name, limit: "key" }, q.heldByKeyLimit],
            [{ queue: q.name, limit: "rate" }, q.heldByRateLimit],
          ]),
        ),
        ...gauge(
          "taskq_queue_rate_tokens",
          "Tokens free now in the queue's rate_limit (queues without one are left out).",
          listed.queues.flatMap((q): [Labels, number][] => (q.rateTokens === null ? [] : [[{ queue: q.name }, q.rateTokens]])),
        ),
      );
    }
    return `${lines.join("\n")}\n`;
  }
}
