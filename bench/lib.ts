/** Shared pieces of the benchmark: timing, percentiles, child processes. */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export const wallMs = () => performance.timeOrigin + performance.now();

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The value at fraction `p` (0..1) of the sorted values, or NaN for none. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

export function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 0.5);
}

export { freePort } from "../scripts/free-port.js";

export interface Child {
  proc: ChildProcess;
  /** Resolves with the first line of output matching `pattern`. */
  line(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Every output line so far. */
  lines(): string[];
  stop(signal?: NodeJS.Signals): Promise<void>;
  exited: Promise<number | null>;
}

/**
 * The interpreter of the Python bench worker: TASKQ_PYTHON, as in the tests, else Debian's, which has
 * grpcio and protobuf.
 */
const PYTHON = process.env.TASKQ_PYTHON ?? "/usr/bin/python3";

/**
 * Starts a script in its own process: JavaScript with plain node (the compiled server), a bench
 * TypeScript file with tsx. Either way taskq's packages are their compiled dist/, as a user runs them.
 * A Python script runs with PYTHON; `nodeArgs` do not apply to it.
 */
export function start(script: string, env: NodeJS.ProcessEnv = {}, args: string[] = [], nodeArgs: string[] = []): Child {
  const loader = script.endsWith(".ts") ? ["--import", "tsx"] : [];
  const [command, commandArgs] = script.endsWith(".py") ? [PYTHON, [script, ...args]] : [process.execPath, [...nodeArgs, ...loader, script, ...args]];
  const proc = spawn(command, commandArgs, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const out: string[] = [];
  let partial = "";
  const waiters = new Set<() => void>();
  const take = (chunk: Buffer) => {
    const text = partial + chunk.toString();
    const parts = text.split("\n");
    partial = parts.pop()!;
    out.push(...parts);
    for (const wake of waiters) wake();
  };
  proc.stdout!.on("data", take);
  proc.stderr!.on("data", take);
  const exited = new Promise<number | null>((resolve) =>
    proc.on("exit", (code) => {
      for (const wake of waiters) wake();
      resolve(code);
    }),
  );
  return {
    proc,
    exited,
    lines: () => out,
    line(pattern, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = out.find((l) => pattern.test(l));
          if (found !== undefined) return done(() => resolve(found));
          if (proc.exitCode !== null) done(() => reject(new Error(`${script} exited (${proc.exitCode}) before ${pattern}:\n${out.slice(-30).join("\n")}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} from ${script}:\n${out.slice(-30).join("\n")}`))), timeoutMs);
        const done = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    async stop(signal = "SIGTERM") {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** CPU time (user + system) a process has used so far, in milliseconds (Linux /proc). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU time used so far by every process named postgres (the server and its backends), in
 * milliseconds, leaving out the backends in `exclude` (the bench's own connections, whose polling is
 * not the subject's cost). Read before and after a scenario, the difference is what its database work
 * cost, as long as the backends it used are still alive at the end (pooled connections are).
 */
export function postgresCpuMs(exclude: ReadonlySet<number> = new Set()): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || exclude.has(Number(entry))) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() === "postgres") total += cpuMs(Number(entry));
    } catch {
      // The process ended meanwhile.
    }
  }
  return total;
}

/** USER_HZ: 100 on Linux everywhere that matters. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Resident memory of a process, in MiB (Linux /proc). */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}
