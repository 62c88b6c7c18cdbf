/**
 * The packages as a user gets them: `npm pack` tarballs, installed with npm into scratch projects under
 * the OS temp folder, where nothing of the workspace can be reached (its node_modules, the packages'
 * src/, the "@taskq/source" condition, tsx). Their programs run under plain node. For test/packages.test.ts.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("..", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("./outside-project/", import.meta.url));

/** The package folders under packages/, in dependency order. */
export const PACKAGES = ["protocol", "sdk", "server", "cli"] as const;
export type PackageName = (typeof PACKAGES)[number];

/** What each package needs installed beside it: the @taskq packages it depends on, which no registry has. */
export const WITH: Record<PackageName, PackageName[]> = {
  protocol: [],
  sdk: ["protocol"],
  server: ["protocol"],
  cli: ["protocol", "sdk"],
};

/** Fails, saying what to do, unless every package has its dist/ (built by `npm run build`, which `npm test` runs first). */
export function assertBuilt(): void {
  const missing = PACKAGES.filter((p) => !existsSync(path.join(REPO, "packages", p, "dist")));
  if (missing.length > 0) throw new Error(`packages/{${missing.join(",")}}/dist is missing: run npm run build (npm test runs it first)`);
}

/** A new empty folder under the OS temp folder (outside the repository). */
export const tempDir = (label: string) => mkdtemp(path.join(tmpdir(), `taskq-${label}-`));

/**
 * The environment of a child that should behave as in a user's shell. Without NODE_OPTIONS, which could
 * carry a loader; without the npm_* variables npm sets for `npm test` (npm_config_local_prefix names the
 * workspace): a child npm reads its settings from the user's npmrc, as it would in a shell; without the
 * server's settings of the shell that runs the tests (TASKQ_*, DATABASE_URL): only `extra`'s count. The
 * folder of this node comes first on PATH, for the bins' `#!/usr/bin/env node`.
 */
export function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(npm_|TASKQ_|NODE_OPTIONS$|INIT_CWD$|DATABASE_URL$)/i.test(key)) env[key] = value;
  }
  env.PATH = [path.dirname(process.execPath), process.env.PATH].join(path.delimiter);
  return { ...env, ...extra };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, killed after `timeoutMs` (then code is null). */
export function run(file: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: opts.cwd, env: opts.env ?? userEnv(), timeout: opts.timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
      const killed = err?.killed ? `\n(killed after ${opts.timeoutMs} ms)` : "";
      resolve({ code, stdout, stderr: stderr + killed });
    });
  });
}

/** Resolves as `promise` does, or fails after `timeoutMs`. */
export async function within<T>(what: string, promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fails with the command's output unless it exited 0. */
export function assertRan(what: string, r: RunResult): RunResult {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** `npm pack`s every package into `dest`; the tarballs' paths. Scripts are not run: dist/ is built already. */
export async function packAll(dest: string): Promise<Record<PackageName, string>> {
  const workspaces = PACKAGES.flatMap((p) => ["-w", `packages/${p}`]);
  const packed = assertRan(
    "npm pack",
    await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dest, ...workspaces], { cwd: REPO, timeoutMs: 60_000 }),
  );
  const files = new Map((JSON.parse(packed.stdout) as { name: string; filename: string }[]).map((p) => [p.name, p.filename]));
  const tarball = (p: PackageName) => {
    const file = files.get(`@taskq/${p}`);
    if (!file) throw new Error(`npm pack made no tarball of @taskq/${p}:\n${packed.stdout}`);
    return path.join(dest, file);
  };
  return Object.fromEntries(PACKAGES.map((p) => [p, tarball(p)])) as Record<PackageName, string>;
}

/**
 * Makes `dir` a scratch project (package.json {"type":"module"}) with these dependencies, installed by npm.
 * The cache holds every registry package the repository uses, so --prefer-offline needs no network.
 */
export async function installProject(dir: string, dependencies: Record<string, string>): Promise<void> {
  const manifest = { name: `scratch-${path.basename(dir).toLowerCase()}`, private: true, type: "module", dependencies };
  await writeFile(path.join(dir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  assertRan(`npm install in ${dir}`, await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: dir, timeoutMs: 120_000 }));
}

/** The dependencies naming these packages' tarballs. */
export const tarballDeps = (tarballs: Record<PackageName, string>, names: PackageName[]) =>
  Object.fromEntries(names.map((p) => [`@taskq/${p}`, `file:${tarballs[p]}`]));

export interface Footprint {
  /** The sum of the sizes of the regular files under node_modules (not disk blocks). */
  bytes: number;
  /** The installed packages' names (a package nested under another's node_modules counts again). */
  packages: string[];
}

/** What an install put in `<project>/node_modules`. */
export async function footprint(project: string): Promise<Footprint> {
  const result: Footprint = { bytes: 0, packages: [] };
  const walk = async (dir: string, packageName: string | null): Promise<void> => {
    if (packageName !== null && existsSync(path.join(dir, "package.json"))) result.packages.push(packageName);
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isFile()) result.bytes += (await lstat(full)).size;
      if (!entry.isDirectory()) continue; // symlinks (.bin) are not followed
      await walk(full, childPackageName(dir, entry.name));
    }
  };
  await walk(path.join(project, "node_modules"), null);
  return result;
}

/** The package a folder named `name` inside `parent` is, if it is one: node_modules/<name> or node_modules/@scope/<name>. */
function childPackageName(parent: string, name: string): string | null {
  if (path.basename(parent) === "node_modules") return name.startsWith(".") || name.startsWith("@") ? null : name;
  const scope = path.basename(parent);
  return scope.startsWith("@") && path.basename(path.dirname(parent)) === "node_modules" ? `${scope}/${name}` : null;
}

export const megabytes = (bytes: number) => (bytes / 1e6).toFixed(2);

/** A long-running child (the installed taskq-server) with its output collected. */
export interface Child {
  proc: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
}

/** Starts an installed bin, as a shell would run it (its #! line picks node). */
export function startBin(bin: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Child {
  const proc = spawn(bin, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const listeners = new Set<() => void>();
  const take = (chunk: Buffer) => {
    out += chunk.toString();
    for (const l of listeners) l();
  };
  proc.stdout.on("data", take);
  proc.stderr.on("data", take);
  const exited = new Promise<number | null>((resolve) => {
    proc.on("error", (err) => {
      out += `${err}\n`;
      resolve(null);
    });
    // "close", not "exit": the output is complete by then.
    proc.on("close", (code) => resolve(code));
  });
  const waitFor = (pattern: RegExp, timeoutMs: number) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const finish = (f: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        f();
      };
      const check = () => {
        const m = out.match(pattern);
        if (m) finish(() => resolve(m));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no ${pattern} from ${bin} within ${timeoutMs} ms:\n${out}`))), timeoutMs);
      void exited.then((code) => finish(() => reject(new Error(`${bin} exited (${code}) before ${pattern}:\n${out}`))));
      listeners.add(check);
      check();
    });
  return { proc, output: () => out, exited, waitFor };
}
