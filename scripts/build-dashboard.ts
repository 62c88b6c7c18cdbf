/**
 * Builds the dashboard into dashboard/dist: dashboard/src bundled by esbuild into one app.js (the
 * generated API client and connect-web included; nothing is fetched at run time), with index.html and
 * style.css beside it. `npm start` and `npm test` run it first; it takes well under a second.
 */
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dashboard");
const dist = path.join(root, "dist");

await mkdir(dist, { recursive: true });
await build({
  entryPoints: [path.join(root, "src", "main.ts")],
  outfile: path.join(dist, "app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
});
await Promise.all(["index.html", "style.css"].map((f) => copyFile(path.join(root, f), path.join(dist, f))));
console.log(`dashboard built in ${path.relative(process.cwd(), dist) || dist}`);
