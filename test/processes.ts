/** Child processes for tests: start one with tsx, wait for a line of its output, stop it. */
import { spawn, type ChildProcess } from "node:child_process";

export { freePort } from "../scripts/free-port.js";

export interface Child {
  proc: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
  /** Sends `signal` to the process or, when it was started as a group, to its whole process group. */
  signal(signal: NodeJS.Signals): void;
}

export interface StartOptions {
  /**
   * Start it as the leader of a process group of its own, as a shell starts a command in a terminal:
   * `signal` then reaches every process of the group, as Ctrl-C (SIGINT) or a closed terminal does.
   */
  group?: boolean;
}

export function startTs(script: string, env: NodeJS.ProcessEnv, opts: StartOptions = {}): Child {
  const proc = spawn(process.execPath, ["--conditions=@taskq/source", "--import", "tsx", script], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: opts.group ?? false,
  });
  let out = "";
  const listeners = new Set<() => void>();
  const take = (chunk: Buffer) => {
    out += chunk.toString();
    for (const listener of listeners) listener();
  };
  proc.stdout!.on("data", take);
  proc.stderr!.on("data", take);
  const exited = new Promise<number | null>((resolve) =>
    proc.on("exit", (code) => {
      for (const listener of listeners) listener();
      resolve(code);
    }),
  );
  return {
    proc,
    output: () => out,
    exited,
    signal(signal) {
      if (!opts.group) return void proc.kill(signal);
      try {
        process.kill(-proc.pid!, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err; // the group is gone already
      }
    },
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(pattern);
          if (m) return done(() => resolve(m));
          if (proc.exitCode !== null || proc.signalCode !== null) done(() => reject(new Error(`${script} exited (${proc.exitCode ?? proc.signalCode}) before ${pattern}:\n${out}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} from ${script} within ${timeoutMs} ms:\n${out}`))), timeoutMs);
        const done = (f: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      });
    },
  };
}
