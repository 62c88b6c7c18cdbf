/**
 * Immediate mode: `taskq run <module> <type> [--key=value]...` imports the module, finds the Worker it
 * exports, and runs one of its handlers here, with no server. The CLI is plain JavaScript, so a
 * TypeScript module needs a loader: tsx from the module's own project (or the current directory's),
 * registered for this process; without one, a usage error says what to do instead.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { JsonObject, Worker } from "@taskq/sdk";
import { UsageError, out, paramValue } from "./args.js";
import { json } from "./format.js";

const TYPESCRIPT = /\.[cm]?ts$/;

export async function runImmediate(args: string[]): Promise<number> {
  const asJson = args.includes("--json");
  const [modulePath, type, ...pairs] = args.filter((a) => a !== "--json");
  if (!modulePath || !type) throw new UsageError("run: expected <module> <type>");
  const params: JsonObject = {};
  for (const pair of pairs) {
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(pair);
    if (!m) throw new UsageError(`run: ${pair}: expected --key=value`);
    params[m[1]] = m[2] === undefined ? true : paramValue(m[2]);
  }
  const file = path.resolve(modulePath);
  if (TYPESCRIPT.test(file)) await loadTypeScript(file, modulePath);
  const worker = exportedWorker((await import(pathToFileURL(file).href)) as Record<string, unknown>);
  if (!worker) throw new UsageError(`run: ${modulePath} exports no Worker`);
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort(new Error("interrupted from the terminal")));
  // With --json, stdout carries only the result; log lines go to stderr.
  const report = (line: string) => (asJson ? process.stderr : process.stdout).write(`${line}\n`);
  try {
    const result = await worker.run(type, params, { report, signal: abort.signal });
    out(asJson ? json({ result: result ?? null }) : `result: ${json(result)}`);
    return 0;
  } catch (err) {
    process.stderr.write(`failed: ${(err as Error).message}\n`);
    return 1;
  }
}

/**
 * The Worker among the module's exports (or, for a CommonJS module, its module.exports). Recognised by
 * shape, not instanceof: the module may load another copy of the SDK than the CLI's own (a CLI
 * installed globally, the SDK in the project).
 */
function exportedWorker(mod: Record<string, unknown>): Pick<Worker, "run"> | undefined {
  const isWorker = (v: unknown): v is Worker =>
    typeof v === "object" && v !== null && ["register", "start", "stop", "run"].every((m) => typeof (v as Record<string, unknown>)[m] === "function");
  const candidates = [...Object.values(mod), ...(typeof mod.default === "object" && mod.default !== null ? Object.values(mod.default) : [])];
  return candidates.find(isWorker);
}

/**
 * Registers tsx, from the project of the module or of the current directory, for the rest of this
 * process: its ESM hooks and its CommonJS ones (a .ts file in a package without "type": "module" is
 * loaded as CommonJS). Registering it again where it already runs is harmless.
 */
async function loadTypeScript(file: string, shownAs: string): Promise<void> {
  const tsx = findPackage("tsx", [path.dirname(file), process.cwd()]);
  if (tsx) {
    for (const api of ["./esm/api", "./cjs/api"]) {
      const { register } = (await import(pathToFileURL(importEntry(tsx, api)).href)) as { register: () => unknown };
      register();
    }
    return;
  }
  // The CLI itself running from its TypeScript source proves a loader is in place (node --import tsx).
  if (import.meta.url.endsWith(".ts")) return;
  throw new UsageError(
    `run: ${shownAs} is TypeScript, and tsx is not installed in its project or in ${process.cwd()}: ` +
      "compile the module to JavaScript and run the .js file, or install tsx there (npm install --save-dev tsx)",
  );
}

/** The directory and manifest of a package as `require` would find it from one of `from` (tried in order). */
function findPackage(name: string, from: string[]): { dir: string; manifest: PackageManifest } | null {
  for (const dir of from) {
    try {
      const manifestPath = createRequire(path.join(dir, "noop.js")).resolve(`${name}/package.json`);
      return { dir: path.dirname(manifestPath), manifest: JSON.parse(readFileSync(manifestPath, "utf8")) as PackageManifest };
    } catch {
      // Not installed there: try the next.
    }
  }
  return null;
}

interface PackageManifest {
  exports?: Record<string, unknown>;
}

/**
 * The file a package exports `subpath` as to `import`. Read from its exports map because `require`
 * resolves the CommonJS build, and tsx's CommonJS build of the ESM API does not register from there.
 */
function importEntry(pkg: { dir: string; manifest: PackageManifest }, subpath: string): string {
  let target: unknown = pkg.manifest.exports?.[subpath];
  while (typeof target === "object" && target !== null) {
    const conditions = target as Record<string, unknown>;
    target = conditions.import ?? conditions.default;
  }
  if (typeof target !== "string") throw new UsageError(`run: this tsx (${pkg.dir}) exports no ${subpath}: install tsx 4 or later`);
  return path.join(pkg.dir, target);
}
