/**
 * Keys in the chaos run (scripts/chaos.ts): a share of the traffic goes to the queue `tenants`, under a
 * concurrency key each, where the replicas' config limits each key's running tasks and its starts. The
 * limits must hold through every fault:
 *
 *   over the key limit   a sample of the database (every 100 ms while the run goes on) in which one key
 *                        had more than MAX_RUNNING_PER_KEY tasks running or cancelling
 *   over the rate limit  a window of KEY_RATE.per_ms in which one key's attempts started more than
 *                        tasks + burst times (from every attempt's start in the finished tasks' records)
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import type pg from "pg";
import { sleep } from "./chaos-procs.js";

export const KEYED_QUEUE = "tenants";
export const KEYS = Array.from({ length: 10 }, (_, i) => `tenant-${i}`);
/**
 * Tight enough that keys meet their limits all through the run, loose enough that the keyed backlog
 * left when dispatching stops drains well within the settle time (a 300 s run at 2 per key and 8
 * keys took 112 s to settle and verify, against 120 s allowed to settle).
 */
const MAX_RUNNING_PER_KEY = 3;
const KEY_RATE = { tasks: 20, per_ms: 1_000, burst: 2 };

/** Writes the replicas' config file (into `dir`) and returns its path. */
export async function keyedConfigWrite(dir: string): Promise<string> {
  const file = path.join(dir, "config.json");
  const queues = { [KEYED_QUEUE]: { max_running_per_key: MAX_RUNNING_PER_KEY, rate_limit_per_key: KEY_RATE } };
  await writeFile(file, JSON.stringify({ queues }));
  return file;
}

/** Samples the running tasks per key until stopped; the most seen, and the samples over the limit. */
export class KeySampler {
  most = 0;
  samples = 0;
  over = 0;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(private readonly db: pg.Pool) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const most = await this.db
        .query<{ n: number }>(
          `select coalesce(max(n), 0)::int4 as n from (
             select count(*) as n from taskq.tasks where queue = $1 and status <> 'pending' group by concurrency_key) k`,
          [KEYED_QUEUE],
        )
        .then((r) => r.rows[0].n)
        .catch(() => null); // the database may be restarting: a sample is skipped, not the run
      if (most !== null) {
        this.samples += 1;
        this.most = Math.max(this.most, most);
        if (most > MAX_RUNNING_PER_KEY) this.over += 1;
      }
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

export interface KeyReport {
  /** Most tasks of one key running at once in any sample, and the samples over the limit. */
  mostRunning: number;
  samples: number;
  overKeyLimit: number;
  /** Most attempt starts of one key in any window of per_ms, and the windows over tasks + burst. */
  mostStarts: number;
  overRateLimit: number;
  problems: string[];
}

/** The verdict on the keys' limits, once every task has settled. */
export async function keysVerify(db: pg.Pool, sampler: KeySampler): Promise<KeyReport> {
  await sampler.stop();
  const { rows } = await db.query<{ key: string; at: number }>(
    `select h.concurrency_key as key, (c ->> 'at')::float8 as at
     from taskq.history h cross join jsonb_array_elements(h.status_changes) c
     where h.queue = $1 and c ->> 's' = 'running' and h.concurrency_key is not null
     order by 1, 2`,
    [KEYED_QUEUE],
  );
  const allowed = KEY_RATE.tasks + KEY_RATE.burst;
  const problems: string[] = [];
  let mostStarts = 0;
  let overRateLimit = 0;
  const byKey = new Map<string, { at: number }[]>();
  for (const r of rows) byKey.get(r.key)?.push(r) ?? byKey.set(r.key, [r]);
  for (const [key, starts] of byKey) {
    for (let i = 0, j = 0; i < starts.length; i++) {
      while (starts[i].at - starts[j].at >= KEY_RATE.per_ms) j++;
      const n = i - j + 1;
      mostStarts = Math.max(mostStarts, n);
      if (n === allowed + 1) {
        overRateLimit += 1;
        problems.push(`key ${key}: ${n} attempts started within ${KEY_RATE.per_ms} ms from ${new Date(starts[j].at).toISOString()} (allowed ${allowed})`);
      }
    }
  }
  if (sampler.over > 0) problems.push(`${sampler.over} of ${sampler.samples} samples had a key running more than ${MAX_RUNNING_PER_KEY} tasks (most ${sampler.most})`);
  return { mostRunning: sampler.most, samples: sampler.samples, overKeyLimit: sampler.over, mostStarts, overRateLimit, problems };
}

/** The line the run prints about its keys. */
export const keysLine = (k: KeyReport) =>
  `keys: at most ${k.mostRunning} tasks of one key running in ${k.samples} samples (limit ${MAX_RUNNING_PER_KEY}, ${k.overKeyLimit} over); ` +
  `at most ${k.mostStarts} starts of one key in ${KEY_RATE.per_ms} ms (limit ${KEY_RATE.tasks} + burst ${KEY_RATE.burst}, ${k.overRateLimit} windows over)`;
