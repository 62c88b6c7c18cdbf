/**
 * The chaos run's child processes (scripts/chaos.ts): each replica and worker is a Proc that can be
 * started again with the same settings, killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT).
 *
 * States of a Proc: down (never started, or dead) → starting → running ⇄ paused → down. Only `kill`
 * ends a process; a paused one is resumed first, so no process is ever left stopped. An exit that the
 * run did not cause is a crash: `crashed` says so until the Proc is started again.
 *
 * A Proc keeps what the verdict needs about every process it ran, by pid: when it started, when it was
 * paused and resumed, and when it died, all on the host's clock (Date.now()), which is the clock
 * Postgres's clock_timestamp() reads on this machine (checked at start, see chaos-db.ts).
 *
 * Every Proc is registered, and `killEverything` (called on any exit of the run, however it ends)
 * resumes and kills whatever is still running, so the run never leaks a process.
 */
import { spawn, type ChildProcess } from "node:child_process";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)];
/** A random number of milliseconds in [from, to). */
export const between = (from: number, to: number) => Math.round(from + Math.random() * (to - from));
const t0 = performance.now();
/** Prints a line of the run's log, stamped with the seconds since the run began. */
export const say = (line: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}`);

/** One process a Proc ran: the verdict's view of it (host clock, ms since the epoch). */
export interface ProcessLife {
  name: string;
  pid: number;
  startedAt: number;
  /** When it died: the moment the run sent SIGKILL, or when its exit was seen; null while it lives. */
  diedAt: number | null;
  /** SIGSTOP → SIGCONT intervals. */
  pauses: { from: number; to: number | null }[];
}

type Mode = "down" | "starting" | "running" | "paused";

const everyProc = new Set<Proc>();

export class Proc {
  private child: ChildProcess | null = null;
  private mode: Mode = "down";
  /** SIGKILLs sent by the run's faults (not the final cleanup). */
  kills = 0;
  readonly lives: ProcessLife[] = [];
  private output = "";
  /** Set when the process exited without being killed; cleared by the next start. */
  private crash: string | null = null;

  constructor(
    readonly name: string,
    private readonly script: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    everyProc.add(this);
  }

  get alive(): boolean {
    return this.mode === "running" || this.mode === "paused";
  }

  get paused(): boolean {
    return this.mode === "paused";
  }

  get down(): boolean {
    return this.mode === "down";
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Why the process exited by itself, if it did (until it is started again). */
  get crashed(): string | null {
    return this.crash;
  }

  /** Starts the process; resolves once its output matches `ready` (at once without one). */
  async start(ready: RegExp | null): Promise<void> {
    if (this.mode !== "down") throw new Error(`${this.name} is ${this.mode}, not down`);
    this.mode = "starting";
    this.output = "";
    this.crash = null;
    const child = spawn(process.execPath, ["--conditions=@taskq/source", "--import", "tsx", this.script], { env: { ...process.env, ...this.env }, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const life: ProcessLife = { name: this.name, pid: child.pid ?? -1, startedAt: Date.now(), diedAt: null, pauses: [] };
    this.lives.push(life);
    const take = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    child.once("error", (err) => (this.crash ??= `${this.name} could not be run: ${err.message}`));
    child.once("exit", (code, signal) => {
      life.diedAt ??= Date.now();
      if (this.child !== child) return;
      if (this.mode !== "down") this.crash = `${this.name} (pid ${life.pid}) exited by itself (${signal ?? `code ${code}`}):\n${this.output.slice(-3_000)}`;
      this.mode = "down";
      this.child = null;
    });
    const deadline = Date.now() + 60_000;
    while (ready && !ready.test(this.output)) {
      if (this.crash) throw new Error(this.crash);
      if (this.down) throw new Error(`${this.name} was killed while starting`);
      if (Date.now() > deadline) {
        await this.kill(false);
        throw new Error(`${this.name} did not start:\n${this.output}`);
      }
      await sleep(25);
    }
    if (this.mode === "starting") this.mode = "running";
  }

  /** SIGSTOP: the process keeps its sockets and its state, and does nothing at all until resumed. */
  pause(): void {
    if (this.mode !== "running") throw new Error(`${this.name} is ${this.mode}, not running`);
    this.child!.kill("SIGSTOP");
    this.mode = "paused";
    this.lives.at(-1)!.pauses.push({ from: Date.now(), to: null });
  }

  /** SIGCONT. */
  resume(): void {
    if (this.mode !== "paused") return;
    this.child!.kill("SIGCONT");
    this.mode = "running";
    this.lives.at(-1)!.pauses.at(-1)!.to = Date.now();
  }

  /** SIGKILL (a paused process is resumed first): no goodbye, no drain. Resolves once it is gone. */
  async kill(countIt = true): Promise<void> {
    const child = this.child;
    if (!child || this.mode === "down") return;
    this.resume();
    if (countIt) this.kills++;
    this.mode = "down";
    const exited = new Promise((r) => child.once("exit", r));
    this.lives.at(-1)!.diedAt = Date.now();
    child.kill("SIGKILL");
    await exited;
  }

  /** SIGCONT and SIGKILL at once, without waiting: for the exit handler. */
  killNow(): void {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.mode = "down";
    child.kill("SIGCONT");
    child.kill("SIGKILL");
  }
}

/** Resumes and kills every process any Proc still runs (synchronous: safe in an exit handler). */
export function killEverything(): void {
  for (const p of everyProc) p.killNow();
}

/** Resumes and kills every process any Proc still runs, and waits until they are gone. */
export async function stopEverything(): Promise<void> {
  await Promise.all([...everyProc].map((p) => p.kill(false)));
}
