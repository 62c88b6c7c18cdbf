/**
 * The layering check: fails (exit 1, one line per crossing) when a source file imports across a line
 * the architecture draws. It reads packages/X/src/** and packages/server/dashboard/src/**; the rules:
 *
 *   a. the engine (packages/server/src/engine/) imports nothing outside engine/ (not the RPC layer,
 *      metrics, config, the server's wiring), and no gRPC, protobuf or @taskq package;
 *   b. the rest of the server imports the engine only through engine/index.js;
 *   c. the server does not import the SDK;
 *   d. the CLI and the dashboard import neither the protocol nor generated code, and of the SDK only its
 *      public entries: "@taskq/sdk" and "@taskq/sdk/client" (the dashboard, a browser bundle, only the latter);
 *   e. the protocol imports no other @taskq package; the SDK imports neither the server nor the CLI;
 *   f. a relative import stays inside its package;
 *   g. a bare import is a declared "dependencies" entry of its package (the dashboard, bundled at build
 *      time, may also use devDependencies), so a published package never misses one;
 *   h. the SDK's browser-safe entry (portable.ts, and every file it reaches by relative imports) reaches
 *      no Node built-in and not @connectrpc/connect-node.
 *
 * Imports are listed by the TypeScript compiler's preProcessFile: import and export-from declarations
 * (type-only ones too: a published .d.ts needs them), import() and require() of a literal. An import()
 * of a computed specifier cannot be checked.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { isBuiltin } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";

export type Rule = "a" | "b" | "c" | "d" | "e" | "f" | "g" | "h";

export const RULES: Record<Rule, string> = {
  a: "the engine imports nothing outside engine/, nor gRPC, protobuf or @taskq packages",
  b: "code outside engine/ imports the engine only through engine/index.js",
  c: "the server does not import the SDK",
  d: "the CLI and the dashboard use only the SDK's public entries (the dashboard: @taskq/sdk/client), no protocol or generated code",
  e: "the protocol imports no other @taskq package; the SDK imports neither the server nor the CLI",
  f: "a relative import stays inside its package",
  g: "a bare import is declared in its package's dependencies",
  h: "the SDK's browser entry (portable.ts) reaches no Node built-in and not @connectrpc/connect-node",
};

export interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

/** What the check reads: source files by repository-relative path (with "/"), and each package's manifest. */
export interface SourceTree {
  files: Map<string, string>;
  /** Package directory ("packages/sdk") → its package.json. */
  manifests: Map<string, Manifest>;
}

export interface Crossing {
  file: string;
  line: number;
  specifier: string;
  rule: Rule;
}

const SERVER_SRC = "packages/server/src/";
const ENGINE = "packages/server/src/engine/";
const ENGINE_ENTRY = "packages/server/src/engine/index";
const CLI_SRC = "packages/cli/src/";
const DASHBOARD_SRC = "packages/server/dashboard/src/";
const PROTOCOL_SRC = "packages/protocol/src/";
const SDK_SRC = "packages/sdk/src/";
const SDK_BROWSER_ENTRY = "packages/sdk/src/portable.ts";
/** Packages the engine must not know: gRPC and protobuf, and taskq's own (the protocol, the SDK, the server's entry). */
const ENGINE_FORBIDDEN = /^@(connectrpc|bufbuild|grpc|taskq)\//;

interface Import {
  specifier: string;
  line: number;
  /** For a relative import: the repository path it points at, extension as written. */
  target: string | null;
  /**
   * The package the import names ("@bufbuild/protobuf" for "@bufbuild/protobuf/wkt"; for a relative
   * import, the package whose directory it points into); null for a built-in or a path outside packages/.
   */
  packageName: string | null;
  /** A Node built-in ("node:fs", or "fs" without the prefix). */
  builtin: boolean;
}

/** Every crossing in the tree, in file order. */
export function checkLayering(tree: SourceTree): Crossing[] {
  const crossings: Crossing[] = [];
  const browserReach = reachableFrom(SDK_BROWSER_ENTRY, tree.files);
  for (const [file, source] of [...tree.files].sort(([a], [b]) => a.localeCompare(b))) {
    for (const imp of importsOf(file, source, tree.manifests)) {
      for (const rule of rulesBroken(file, imp, tree, browserReach)) {
        crossings.push({ file, line: imp.line, specifier: imp.specifier, rule });
      }
    }
  }
  return crossings;
}

export const formatCrossing = (c: Crossing) => `${c.file}:${c.line}: imports "${c.specifier}": rule ${c.rule}: ${RULES[c.rule]}`;

function rulesBroken(file: string, imp: Import, tree: SourceTree, browserReach: Set<string>): Rule[] {
  const broken: Rule[] = [];
  const { specifier, target, packageName, builtin } = imp;
  const ownDir = packageDirOf(file);
  if (file.startsWith(ENGINE)) {
    if (target !== null ? !target.startsWith(ENGINE) : ENGINE_FORBIDDEN.test(specifier)) broken.push("a");
  } else if (file.startsWith(SERVER_SRC) && target?.startsWith(ENGINE) && stripExtension(target) !== ENGINE_ENTRY) {
    broken.push("b");
  }
  if (file.startsWith(SERVER_SRC) && packageName === "@taskq/sdk") broken.push("c");
  if ((file.startsWith(CLI_SRC) || file.startsWith(DASHBOARD_SRC)) && !publicClientImport(file, imp)) broken.push("d");
  if (file.startsWith(PROTOCOL_SRC) && packageName?.startsWith("@taskq/") && packageName !== "@taskq/protocol") broken.push("e");
  if (file.startsWith(SDK_SRC) && (packageName === "@taskq/server" || packageName === "@taskq/cli")) broken.push("e");
  if (target !== null && (ownDir === null || !target.startsWith(`${ownDir}/`))) broken.push("f");
  if (target === null && !specifier.startsWith("node:") && (builtin || !declared(file, packageName, tree.manifests))) broken.push("g");
  if (browserReach.has(file) && (builtin || packageName === "@connectrpc/connect-node")) broken.push("h");
  return broken;
}

/** Rule d: what the CLI and the dashboard may import of taskq's own packages. */
function publicClientImport(file: string, { specifier, target, packageName }: Import): boolean {
  if (packageName === "@taskq/protocol" || /(^|\/)gen(\/|$)/.test(target ?? specifier)) return false;
  if (packageName !== "@taskq/sdk") return true;
  const entries = file.startsWith(DASHBOARD_SRC) ? ["@taskq/sdk/client"] : ["@taskq/sdk", "@taskq/sdk/client"];
  return target === null && entries.includes(specifier);
}

/** Rule g: the package is the file's own, or one its manifest declares. */
function declared(file: string, name: string | null, manifests: Map<string, Manifest>): boolean {
  const dir = packageDirOf(file);
  const manifest = dir === null ? undefined : manifests.get(dir);
  if (!manifest || name === null) return false;
  if (manifest.name === name || manifest.dependencies?.[name] !== undefined) return true;
  return file.startsWith(DASHBOARD_SRC) && manifest.devDependencies?.[name] !== undefined;
}

function importsOf(file: string, source: string, manifests: Map<string, Manifest>): Import[] {
  const lineStarts = [...source.matchAll(/\n/g)].map((m) => m.index);
  return ts.preProcessFile(source, true, true).importedFiles.map(({ fileName: specifier, pos }) => {
    const line = 1 + lineStarts.filter((i) => i < pos).length;
    if (/^\.\.?(\/|$)|^\//.test(specifier)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
      const dir = packageDirOf(target);
      return { specifier, line, target, packageName: dir === null ? null : (manifests.get(dir)?.name ?? dir), builtin: false };
    }
    const builtin = specifier.startsWith("node:") || isBuiltin(specifier);
    return { specifier, line, target: null, packageName: builtin ? null : npmPackageName(specifier), builtin };
  });
}

/** "@scope/name/sub" → "@scope/name"; "name/sub" → "name". */
const npmPackageName = (specifier: string) =>
  specifier
    .split("/")
    .slice(0, specifier.startsWith("@") ? 2 : 1)
    .join("/");

/** "packages/sdk" for any path under it; null outside packages/. */
function packageDirOf(file: string): string | null {
  const m = /^packages\/[^/]+(?=\/)/.exec(file);
  return m ? m[0] : null;
}

const stripExtension = (p: string) => p.replace(/\.(ts|mts|cts|tsx|js|mjs|cjs|jsx)$/, "");

/** The files `entry` reaches through relative imports, itself included. */
function reachableFrom(entry: string, files: Map<string, string>): Set<string> {
  const seen = new Set<string>();
  const todo = files.has(entry) ? [entry] : [];
  for (let file = todo.pop(); file !== undefined; file = todo.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    for (const imp of importsOf(file, files.get(file) ?? "", new Map())) {
      const next = imp.target === null ? undefined : resolveSource(imp.target, files);
      if (next !== undefined) todo.push(next);
    }
  }
  return seen;
}

/** The source file a relative import's target names ("./x.js" is ./x.ts when run from source). */
function resolveSource(target: string, files: Map<string, string>): string | undefined {
  const base = stripExtension(target);
  return [target, `${base}.ts`, `${base}.mts`, `${base}.tsx`, `${target}/index.ts`].find((f) => files.has(f));
}

/** Reads the real tree under `root`: every package's src/ and manifest, and the dashboard's source. */
export function loadSourceTree(root: string): SourceTree {
  const files = new Map<string, string>();
  const manifests = new Map<string, Manifest>();
  const packageDirs = readdirSync(path.join(root, "packages")).map((p) => `packages/${p}`);
  for (const dir of packageDirs) {
    const manifestPath = path.join(root, dir, "package.json");
    if (existsSync(manifestPath)) manifests.set(dir, JSON.parse(readFileSync(manifestPath, "utf8")) as Manifest);
  }
  for (const srcDir of [...packageDirs.map((d) => `${d}/src`), DASHBOARD_SRC.slice(0, -1)]) {
    if (!existsSync(path.join(root, srcDir))) continue;
    for (const rel of readdirSync(path.join(root, srcDir), { recursive: true, encoding: "utf8" })) {
      const file = `${srcDir}/${rel.split(path.sep).join("/")}`;
      if (file.endsWith(".ts") && !file.includes("/node_modules/")) files.set(file, readFileSync(path.join(root, file), "utf8"));
    }
  }
  return { files, manifests };
}

function main(): void {
  const tree = loadSourceTree(path.join(import.meta.dirname, ".."));
  const crossings = checkLayering(tree);
  for (const c of crossings) console.error(formatCrossing(c));
  if (crossings.length > 0) {
    console.error(`layering: ${tree.files.size} files checked, ${crossings.length} crossings`);
    process.exitCode = 1;
  } else {
    console.log(`layering: ${tree.files.size} files checked, no crossings`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
