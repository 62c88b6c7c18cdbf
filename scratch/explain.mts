import pg from "pg";
import { migrate } from "../server/engine/migrate.js";
import { taskLeaseAvailable } from "../server/engine/sql/lease.js";
const url = process.argv[2];
const pool = new pg.Pool({ connectionString: url });
await migrate(pool);
await pool.query(`insert into taskq.tasks (type, queue, status, priority, max_attempts, retry_delay_ms, next_try_at, created_at)
  select 'bench.noop', 'default', 'pending', 0, 10, 30000, now(), now() from generate_series(1, 20000)`);
await pool.query("vacuum analyze taskq.tasks");
const sid = "11111111-1111-1111-1111-111111111111";
await pool.query(`insert into taskq.worker_sessions (id, replica_id, worker_name, task_types, queues, connected_at, heartbeat_at, type_timeouts) values ($1, $1, 'w', '{bench.noop}', '{}', now(), now(), '{}')`, [sid]);
const capture: any = { query: async (q: any) => { capture.q = q; return { rows: [] }; } };
const groups = [{ types: ["bench.noop"], queues: null, slots: Array(80).fill(sid) }];
const opts = { timeouts: { types: {}, queues: {}, defaultMs: 1800000 }, limits: { queues: { scheduled: 1 }, global: null } };
await taskLeaseAvailable(capture, groups as any, opts, new Date());
const c = await pool.connect();
await c.query("begin");
const r = await c.query({ text: "explain (analyze, buffers, timing) " + capture.q.text, values: capture.q.values });
console.log(r.rows.map((x: any) => x["QUERY PLAN"]).join("\n"));
await c.query("rollback");
c.release();
for (let i = 0; i < 5; i++) { const t = performance.now(); await pool.query({ text: capture.q.text, values: capture.q.values }); console.log("real claim ms", (performance.now() - t).toFixed(1)); }
await pool.end();
