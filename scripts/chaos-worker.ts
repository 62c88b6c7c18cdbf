/**
 * One worker process of the chaos run (scripts/chaos.ts starts four and kills, pauses and cuts them off
 * at random). Every execution of a handler is recorded in chaos_runs (chaos-db.ts): a row written
 * before the handler does anything, with the task, the attempt, this process and the start, and
 * completed when the handler ends, before the SDK sends its finish, with the end and whether the
 * handler's signal had aborted (the handlers here honour it: they stop as soon as it aborts). A worker
 * killed mid-run leaves its row without an end. Handlers that complete also record their side effect,
 * one row per attempt, in chaos_effects, so the run can check that every completed task really ran.
 *
 * The SDK's TaskContext does not expose the lease token, so an execution is known by task and attempt;
 * a run that snoozed (its end kind says so) leaves its attempt number to the next run.
 *
 * Environment: CHAOS_URL (the replica to connect to, through the run's proxy), CHAOS_DATABASE_URL (the
 * database, directly), CHAOS_NAME (the worker's name, as in tasks.worker; a run row has it and the pid).
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { RetryableError, TaskAbortedError, TaskSnoozed, Worker, type TaskContext } from "@taskq/sdk";
import { clockAgrees, clockRead } from "./chaos-db.js";

const NAME = process.env.CHAOS_NAME ?? "chaos-worker";
/** Tasks this process has snoozed (chaos.snooze snoozes once per process that runs it). */
const snoozedHere = new Set<string>();
const pool = new pg.Pool({ connectionString: process.env.CHAOS_DATABASE_URL, max: 8 });
pool.on("error", () => {}); // the database restarts during the run; queries below retry

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    const cut = () => {
      clearTimeout(t);
      resolve();
    };
    signal?.addEventListener("abort", cut, { once: true });
  });

/** Runs `query` until the database answers (it restarts once during the run). */
async function persist<T>(query: () => Promise<T>): Promise<T> {
  for (let delay = 50; ; delay = Math.min(delay * 2, 1_000)) {
    try {
      return await query();
    } catch {
      await sleep(delay);
    }
  }
}

interface RunStart {
  id: string;
  taskId: string;
  attempt: number;
  kind: string;
  startedAt: number;
}

interface RunEnd {
  id: string;
  endedAt: number;
  endKind: "returned" | "threw" | "aborted" | "snoozed";
  abortedAt: number | null;
  abortReason: string | null;
}

/**
 * Writes run rows in batches: what handlers ask for within one turn of the event loop goes as one
 * statement, retried until the database answers; each caller's promise resolves once its row is in.
 * A run's end is asked for only after its start resolved, so a batch never holds both.
 */
class RunLog {
  private starts: { row: RunStart; done: () => void }[] = [];
  private ends: { row: RunEnd; done: () => void }[] = [];
  private writing = false;

  start(row: RunStart): Promise<void> {
    return new Promise((done) => {
      this.starts.push({ row, done });
      this.kick();
    });
  }

  end(row: RunEnd): Promise<void> {
    return new Promise((done) => {
      this.ends.push({ row, done });
      this.kick();
    });
  }

  private kick(): void {
    if (this.writing) return;
    this.writing = true;
    setImmediate(() => void this.write());
  }

  private async write(): Promise<void> {
    while (this.starts.length > 0 || this.ends.length > 0) {
      const starts = this.starts.splice(0);
      const ends = this.ends.splice(0);
      const s = starts.map((x) => x.row);
      const e = ends.map((x) => x.row);
      await persist(() =>
        pool.query(
          `with s as (
             insert into chaos_runs (id, task_id, attempt, kind, worker, pid, started_at)
             select id, task_id, attempt, kind, $6, $7, to_timestamp(started_ms / 1000)
             from unnest($1::uuid[], $2::int8[], $3::int4[], $4::text[], $5::float8[]) as i(id, task_id, attempt, kind, started_ms)
             on conflict (id) do nothing
           )
           update chaos_runs r
           set ended_at = to_timestamp(e.ended_ms / 1000), end_kind = e.end_kind,
               aborted_at = to_timestamp(e.aborted_ms / 1000), abort_reason = e.reason
           from unnest($8::uuid[], $9::float8[], $10::text[], $11::float8[], $12::text[]) as e(id, ended_ms, end_kind, aborted_ms, reason)
           where r.id = e.id`,
          [
            s.map((r) => r.id),
            s.map((r) => r.taskId),
            s.map((r) => r.attempt),
            s.map((r) => r.kind),
            s.map((r) => r.startedAt),
            NAME,
            process.pid,
            e.map((r) => r.id),
            e.map((r) => r.endedAt),
            e.map((r) => r.endKind),
            e.map((r) => r.abortedAt),
            e.map((r) => r.abortReason),
          ],
        ),
      );
      for (const x of [...starts, ...ends]) x.done();
    }
    this.writing = false;
  }
}

const runs = new RunLog();

/**
 * Records one execution of `body` around it: the start before it begins (the time is taken when the
 * handler is called), the end before its outcome goes to the SDK. It ended by abort when the signal had
 * aborted by then; the chaos handlers stop promptly when it does.
 */
async function recorded<T>(ctx: TaskContext, body: () => Promise<T>): Promise<T> {
  const startedAt = Date.now();
  let abortedAt: number | null = null;
  ctx.signal.addEventListener("abort", () => (abortedAt = Date.now()), { once: true });
  const id = randomUUID();
  await runs.start({ id, taskId: ctx.id, attempt: ctx.attempt, kind: ctx.type, startedAt });
  let endKind: RunEnd["endKind"] = "threw";
  try {
    const result = await body();
    endKind = "returned";
    return result;
  } catch (err) {
    if (err instanceof TaskSnoozed) endKind = "snoozed";
    throw err;
  } finally {
    const why: unknown = ctx.signal.reason;
    const reason = !ctx.signal.aborted ? null : why instanceof TaskAbortedError ? why.reason : String(why);
    await runs.end({ id, endedAt: Date.now(), endKind: ctx.signal.aborted ? "aborted" : endKind, abortedAt, abortReason: reason });
  }
}

/** Records this attempt's side effect, retrying through a database restart; returns the effect's id. */
async function effect(ctx: TaskContext): Promise<string> {
  for (let delay = 50; ; delay = Math.min(delay * 2, 1_000)) {
    try {
      const { rows } = await pool.query<{ id: string }>(
        "insert into chaos_effects (task_id, attempt, worker) values ($1, $2, $3) returning id::text",
        [ctx.id, ctx.attempt, NAME],
      );
      return rows[0].id;
    } catch {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      await sleep(delay, ctx.signal);
    }
  }
}

const clock = await persist(() => clockRead(pool));
if (!clockAgrees(clock)) {
  console.error(`chaos worker: this process's clock is not the database's (${JSON.stringify(clock)})`);
  process.exit(3);
}

const worker = new Worker({
  url: process.env.CHAOS_URL!,
  name: NAME,
  concurrency: 20,
  reconnect: { initialMs: 50, maxMs: 500 },
});

worker
  .register("chaos.quick", (ctx) => recorded(ctx, async () => ({ effect: await effect(ctx), attempt: ctx.attempt })))
  .register("chaos.slow", (ctx) =>
    recorded(ctx, async () => {
      const steps = 4 + (Number(ctx.id) % 5);
      for (let i = 1; i <= steps && !ctx.signal.aborted; i++) {
        await sleep(250, ctx.signal);
        ctx.log(`step ${i} of ${steps}`);
        ctx.progress(Math.round((100 * i) / steps));
      }
      return { effect: await effect(ctx), attempt: ctx.attempt };
    }),
  )
  .register("chaos.retry", (ctx) =>
    recorded(ctx, async () => {
      if (ctx.attempt < 3) throw new RetryableError(`attempt ${ctx.attempt} fails on purpose`, { delayMs: 100 });
      return { effect: await effect(ctx), attempt: ctx.attempt };
    }),
  )
  .register("chaos.fail", (ctx) =>
    recorded(ctx, async () => {
      await effect(ctx);
      throw new Error("fails on purpose");
    }),
  )
  .register("chaos.snooze", (ctx) =>
    recorded(ctx, async () => {
      // Snoozes the first time this process runs it, so a task snoozes once per worker at most (its
      // attempt number does not move), then completes.
      if (!snoozedHere.has(ctx.id)) {
        snoozedHere.add(ctx.id);
        ctx.snooze(100);
      }
      return { effect: await effect(ctx), attempt: ctx.attempt };
    }),
  )
  .register("chaos.extend", (ctx) =>
    recorded(ctx, async () => {
      // Dispatched with a 5 s timeout: it completes only because it asks for more time first. The timeout
      // stays above the run's longest stalls: it counts from the lease on the server, so a lease held up
      // longer than that on its way (a paused replica or worker, a cut link) would start late.
      ctx.extendDeadline(30_000);
      await sleep(6_000, ctx.signal);
      if (ctx.signal.aborted) throw ctx.signal.reason;
      return { effect: await effect(ctx), attempt: ctx.attempt };
    }),
  )
  .register("chaos.interrupted", (ctx) =>
    recorded(ctx, async () => {
      // Runs until interrupted (the run interrupts every one of these); never completes by itself.
      while (!ctx.signal.aborted) await sleep(60_000, ctx.signal);
      await effect(ctx).catch(() => {});
      return null;
    }),
  );

await worker.start();
console.log(`chaos worker ${NAME} connected`);
