/**
 * One version for every package, bumped together. `npm run set-version -- 0.3.0` sets it in the root and
 * in each packages/<name>/package.json, and the @taskq dependencies between them to the same version
 * (then `npm install` refreshes package-lock.json). `npm run set-version -- --check`, run by CI, fails when
 * any of them disagree.
 */
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";

const ROOT = path.join(import.meta.dirname, "..");
const SECTIONS = ["dependencies", "devDependencies", "peerDependencies"] as const;

interface Manifest {
  file: string;
  json: { name: string; version: string } & Partial<Record<(typeof SECTIONS)[number], Record<string, string>>>;
}

function manifests(): Manifest[] {
  const files = [
    path.join(ROOT, "package.json"),
    ...readdirSync(path.join(ROOT, "packages")).map((p) => path.join(ROOT, "packages", p, "package.json")),
  ];
  return files.map((file) => ({ file, json: JSON.parse(readFileSync(file, "utf8")) }));
}

/** Every place a version is written: the manifests' own, and each @taskq dependency on a sibling. */
function versionsOf(m: Manifest): { where: string; version: string; set(v: string): void }[] {
  const where = path.relative(ROOT, m.file);
  const setOwn = (v: string) => {
    m.json.version = v;
  };
  const found = [{ where, version: m.json.version, set: setOwn }];
  for (const section of SECTIONS) {
    const deps = m.json[section] ?? {};
    for (const name of Object.keys(deps).filter((n) => n.startsWith("@taskq/"))) {
      const set = (v: string) => {
        deps[name] = v;
      };
      found.push({ where: `${where} ${section}.${name}`, version: deps[name], set });
    }
  }
  return found;
}

const arg = process.argv[2];
const all = manifests();
if (arg === "--check") {
  const expected = all[0].json.version;
  const wrong = all.flatMap(versionsOf).filter((v) => v.version !== expected);
  for (const v of wrong) console.error(`${v.where}: ${v.version}, not ${expected} as in package.json`);
  if (wrong.length > 0) process.exit(1);
  console.log(`versions: every package at ${expected}`);
} else if (arg && /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(arg)) {
  for (const m of all) {
    for (const v of versionsOf(m)) v.set(arg);
    writeFileSync(m.file, `${JSON.stringify(m.json, null, 2)}\n`);
  }
  console.log(`every package set to ${arg}; run npm install to refresh package-lock.json`);
} else {
  console.error("usage: npm run set-version -- <x.y.z> | --check");
  process.exit(2);
}
