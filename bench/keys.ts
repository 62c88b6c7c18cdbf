/**
 * (g)'s figures, read from taskq.history once every task has finished, so that measuring costs the run
 * nothing: which keys the leases went to as the run went on, and how long each key's tasks waited.
 *
 * Every task is pending before the first lease, so a task's wait is its lease time (started_at, the
 * time of the claim that leased it) minus the first lease of the run: how far back in line it was.
 * The run is cut into tenths by lease order, each tenth the next 10 % of the leases. Fair shares would
 * give the small keys 9 of every 10 leases until they run out (90 % of the first tenth, the rest in
 * the second); FIFO order gives them none until the big key's backlog is gone (all of the last tenth).
 */
import type pg from "pg";
import { percentile } from "./lib.js";

export interface KeyFigures {
  /** Per tenth of the leases, the fraction that went to the small keys together. */
  smallShare: number[];
  /** Per key, its leases in each tenth. */
  leases: Map<string, number[]>;
  smallWaitP99: number;
  smallWaitMax: number;
  bigWaitP50: number;
  /** Tasks per second from the first lease to the last outcome. */
  tasksPerSec: number;
}

/** The figures of a run whose tasks carry their key in params.key, the big one's being "big". */
export async function keyFigures(db: pg.Pool): Promise<KeyFigures> {
  const { rows } = await db.query<{ key: string; started: number; finished: number }>(
    `select params->>'key' as key, extract(epoch from started_at)::float8 * 1000 as started,
       extract(epoch from finished_at)::float8 * 1000 as finished
     from taskq.history order by started_at, id`,
  );
  const first = rows[0].started;
  const last = rows.reduce((m, r) => Math.max(m, r.finished), first);
  const leases = new Map<string, number[]>();
  const perTenth = new Array<number>(10).fill(0);
  const [smallWaits, bigWaits]: number[][] = [[], []];
  rows.forEach((r, i) => {
    const tenth = Math.floor((i * 10) / rows.length);
    if (!leases.has(r.key)) leases.set(r.key, new Array<number>(10).fill(0));
    leases.get(r.key)![tenth]++;
    perTenth[tenth]++;
    // Rows come in lease order, so both lists are sorted.
    (r.key === "big" ? bigWaits : smallWaits).push(r.started - first);
  });
  const big = leases.get("big") ?? perTenth.map(() => 0);
  return {
    smallShare: perTenth.map((n, t) => (n - big[t]) / n),
    leases,
    smallWaitP99: percentile(smallWaits, 0.99),
    smallWaitMax: smallWaits.at(-1) ?? Number.NaN,
    bigWaitP50: percentile(bigWaits, 0.5),
    tasksPerSec: rows.length / ((last - first) / 1000),
  };
}
