/**
 * The dashboard's files (dist/dashboard, built from dashboard/ by scripts/build-dashboard.mjs), read
 * once at start and served on the server's own port: index.html at /, the icon at /favicon.svg (where
 * browsers look for it), everything else at /dashboard/*. They hold no data, so they need no token;
 * the page asks for one when the API does.
 */
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";

export interface StaticFile {
  contentType: string;
  body: Buffer;
}

/** The same folder whether this runs from src/ (tests) or dist/ (the package). */
const DASHBOARD_DIST = fileURLToPath(new URL("../dist/dashboard/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** Files served at the root rather than under /dashboard/. */
const AT_ROOT: Record<string, string> = { "index.html": "/", "favicon.svg": "/favicon.svg" };

/** URL path → file. Without a build, "/" says how to make one. */
export async function dashboardFiles(log: Logger, dir = DASHBOARD_DIST): Promise<Record<string, StaticFile>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    log.warn({ dir }, "the dashboard is not built (npm run build); / serves a note instead");
    const note = "The taskq dashboard is not built here: run `npm run build` (npm start does it first) and restart.\n";
    return { "/": { contentType: "text/plain; charset=utf-8", body: Buffer.from(note) } };
  }
  const files: Record<string, StaticFile> = {};
  for (const name of names) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const file = { contentType: type, body: await readFile(path.join(dir, name)) };
    files[AT_ROOT[name] ?? `/dashboard/${name}`] = file;
  }
  return files;
}
