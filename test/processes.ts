/** Child processes for tests: start one with tsx, wait for a line of its output, stop it. */
import { spawn, type ChildProcess } from "node:child_process";

export { freePort } from "../scripts/free-port.js";

export interface Child {
  proc: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

export function startTs(script: string, env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", script], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const listeners = new Set<() => void>();
  const take = (chunk: Buffer) => {
    out += chunk.toString();
    listeners.forEach((l) => l());
  };
  proc.stdout!.on("data", take);
  proc.stderr!.on("data", take);
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => (listeners.forEach((l) => l()), resolve(code))));
  return {
    proc,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(pattern);
          if (m) return done(() => resolve(m));
          if (proc.exitCode !== null) done(() => reject(new Error(`${script} exited (${proc.exitCode}) before ${pattern}:\n${out}`)));
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
