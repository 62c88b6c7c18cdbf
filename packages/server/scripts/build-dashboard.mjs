/**
 * Builds the dashboard into dist/dashboard: dashboard/src bundled by esbuild into one app.js (the SDK's
 * client, connect-web and uPlot included; nothing is fetched at run time), with index.html, style.css,
 * favicon.svg and uPlot's own stylesheet (as uplot.css) beside it. `npm run build` runs it, and with it
 * `npm install`, `npm start` and `npm test`; it takes well under a second.
 */
import { copyFile, mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const source = fileURLToPath(new URL("../dashboard/", import.meta.url));
const dist = fileURLToPath(new URL("../dist/dashboard/", import.meta.url));

await mkdir(dist, { recursive: true });
await build({
  entryPoints: [`${source}src/main.ts`],
  outfile: `${dist}app.js`,
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  conditions: ["@taskq/source"],
  minify: true,
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
});
await Promise.all(["index.html", "style.css", "favicon.svg"].map((f) => copyFile(`${source}${f}`, `${dist}${f}`)));
await copyFile(createRequire(import.meta.url).resolve("uplot/dist/uPlot.min.css"), `${dist}uplot.css`);
