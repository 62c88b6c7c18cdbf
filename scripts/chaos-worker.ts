/**
 * One worker process of the chaos run (scripts/chaos.ts starts four and kills them at random). Its
 * handlers record their side effect, one row per attempt, in the chaos_effects table of the same
 * Postgres, so the run can check afterwards that every completed task really ran.
 *
 * Environment: CHAOS_URL (the replica to connect to), CHAOS_DATABASE_URL, CHAOS_NAME.
 */
import pg from "pg";
import { RetryableError, Worker, type TaskContext } from "../sdk/index.js";

const pool = new pg.Pool({ connectionString: process.env.CHAOS_DATABASE_URL, max: 8 });
pool.on("error", () => {}); // the database restarts during the run; queries below retry

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

/** Records this attempt's side effect, retrying through a database restart; returns the effect's id. */
async function effect(ctx: TaskContext): Promise<string> {
  for (let delay = 50; ; delay = Math.min(delay * 2, 1_000)) {
    try {
      const { rows } = await pool.query<{ id: string }>(
        "insert into chaos_effects (task_id, attempt, worker) values ($1, $2, $3) returning id::text",
        [ctx.id, ctx.attempt, process.env.CHAOS_NAME],
      );
      return rows[0].id;
    } catch {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      await sleep(delay, ctx.signal);
    }
  }
}

const worker = new Worker({
  url: process.env.CHAOS_URL!,
  name: process.env.CHAOS_NAME,
  concurrency: 20,
  reconnect: { initialMs: 50, maxMs: 500 },
});

worker
  .register("chaos.quick", async (ctx) => ({ effect: await effect(ctx), attempt: ctx.attempt }))
  .register("chaos.slow", async (ctx) => {
    const steps = 4 + (Number(ctx.id) % 5);
    for (let i = 1; i <= steps && !ctx.signal.aborted; i++) {
      await sleep(250, ctx.signal);
      ctx.log(`step ${i} of ${steps}`);
      ctx.progress(Math.round((100 * i) / steps));
    }
    return { effect: await effect(ctx), attempt: ctx.attempt };
  })
  .register("chaos.retry", async (ctx) => {
    if (ctx.attempt < 3) throw new RetryableError(`attempt ${ctx.attempt} fails on purpose`, { delayMs: 100 });
    return { effect: await effect(ctx), attempt: ctx.attempt };
  })
  .register("chaos.fail", async (ctx) => {
    await effect(ctx);
    throw new Error("fails on purpose");
  })
  .register("chaos.interrupted", async (ctx) => {
    // Runs until interrupted (the run interrupts every one of these); never completes by itself.
    while (!ctx.signal.aborted) await sleep(60_000, ctx.signal);
    await effect(ctx).catch(() => {});
    return null;
  });

await worker.start();
console.log(`chaos worker ${process.env.CHAOS_NAME} connected`);
