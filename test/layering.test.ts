/**
 * scripts/check-layering.ts: each rule reports a crossing planted in a synthetic tree (and stays quiet
 * on a tree that keeps every rule), and the real tree has no crossings.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { RULES, checkLayering, formatCrossing, loadSourceTree, type Crossing, type Manifest, type Rule } from "../scripts/check-layering.js";

const MANIFESTS = new Map<string, Manifest>([
  ["packages/protocol", { name: "@taskq/protocol", dependencies: { "@bufbuild/protobuf": "1" } }],
  [
    "packages/sdk",
    {
      name: "@taskq/sdk",
      dependencies: { "@taskq/protocol": "1", "@bufbuild/protobuf": "1", "@connectrpc/connect": "1", "@connectrpc/connect-node": "1" },
    },
  ],
  [
    "packages/server",
    {
      name: "@taskq/server",
      dependencies: { "@taskq/protocol": "1", "@bufbuild/protobuf": "1", "@connectrpc/connect-node": "1", pg: "1" },
      devDependencies: { "@taskq/sdk": "1", "@connectrpc/connect-web": "1" },
    },
  ],
  ["packages/cli", { name: "@taskq/cli", dependencies: { "@taskq/sdk": "1" } }],
]);

/** A small tree that keeps every rule, with each kind of import the rules must let through. */
const CLEAN: Record<string, string> = {
  "packages/protocol/src/index.ts": `export * from "./gen/taskq/v1/task_pb.js";\nimport { create } from "@bufbuild/protobuf";`,
  "packages/protocol/src/gen/taskq/v1/task_pb.ts": `import { fileDesc } from "@bufbuild/protobuf/codegenv2";`,
  "packages/sdk/src/index.ts": `import { connectNodeAdapter } from "@connectrpc/connect-node";\nimport http2 from "node:http2";\nexport * from "./portable.js";`,
  "packages/sdk/src/portable.ts": `export { TaskClient } from "./client-core.js";\nimport type { Transport } from "@connectrpc/connect";`,
  "packages/sdk/src/client-core.ts": `import { TaskQueue } from "@taskq/protocol";\nimport { timestampDate } from "@bufbuild/protobuf/wkt";`,
  "packages/server/src/engine/index.ts": `export { Engine } from "./engine.js";`,
  "packages/server/src/engine/engine.ts": `import { randomUUID } from "node:crypto";\nimport type pg from "pg";\nimport { taskGet } from "./sql/read.js";`,
  "packages/server/src/engine/sql/read.ts": `import type { TaskRecord } from "../types.js";`,
  "packages/server/src/app.ts": `import { Engine } from "./engine/index.js";\nimport { listen } from "./rpc/server.js";`,
  "packages/server/src/rpc/server.ts": `import type { Engine } from "../engine/index.js";\nimport { TaskQueue } from "@taskq/protocol";`,
  "packages/server/dashboard/src/api.ts": `import { TaskClient } from "@taskq/sdk/client";\nimport { createConnectTransport } from "@connectrpc/connect-web";\nimport { h } from "./dom.js";`,
  "packages/cli/src/main.ts": `import { TaskClient } from "@taskq/sdk";\nimport type { TaskInfo } from "@taskq/sdk/client";\nimport { readFile } from "node:fs/promises";\nimport { format } from "./format.js";`,
};

/** One planted crossing per case: a file's source, the import in it, and the rules it must break. */
const PLANTED: { name: string; file: string; source: string; specifier: string; rules: Rule[] }[] = [
  { name: "engine imports the RPC layer", file: "packages/server/src/engine/x.ts", source: `import { listen } from "../rpc/server.js";`, specifier: "../rpc/server.js", rules: ["a"] },
  { name: "engine loads app.ts with import()", file: "packages/server/src/engine/sql/x.ts", source: `const app = await import("../../app.js");`, specifier: "../../app.js", rules: ["a"] },
  { name: "engine imports connect", file: "packages/server/src/engine/x.ts", source: `import { Code } from "@connectrpc/connect";`, specifier: "@connectrpc/connect", rules: ["a", "g"] },
  { name: "engine imports the protocol", file: "packages/server/src/engine/x.ts", source: `import type { Task } from "@taskq/protocol";`, specifier: "@taskq/protocol", rules: ["a"] },
  { name: "metrics imports an SQL module", file: "packages/server/src/metrics.ts", source: `import type { FinishedAs } from "./engine/sql/lease.js";`, specifier: "./engine/sql/lease.js", rules: ["b"] },
  { name: "rpc re-exports engine/types", file: "packages/server/src/rpc/x.ts", source: `export type { TaskRecord } from "../engine/types.js";`, specifier: "../engine/types.js", rules: ["b"] },
  { name: "server imports the SDK", file: "packages/server/src/app.ts", source: `import type { TaskClient } from "@taskq/sdk";`, specifier: "@taskq/sdk", rules: ["c", "g"] },
  { name: "server reaches into the SDK's source", file: "packages/server/src/x.ts", source: `import "../../sdk/src/client.js";`, specifier: "../../sdk/src/client.js", rules: ["c", "f"] },
  { name: "CLI imports the protocol", file: "packages/cli/src/main.ts", source: `import { TaskStatus } from "@taskq/protocol";`, specifier: "@taskq/protocol", rules: ["d", "g"] },
  { name: "CLI imports an SDK internal", file: "packages/cli/src/main.ts", source: `import "@taskq/sdk/internal/stream-session.js";`, specifier: "@taskq/sdk/internal/stream-session.js", rules: ["d"] },
  { name: "CLI imports generated code", file: "packages/cli/src/x.ts", source: `import "../../protocol/src/gen/taskq/v1/task_pb.js";`, specifier: "../../protocol/src/gen/taskq/v1/task_pb.js", rules: ["d", "f"] },
  { name: "dashboard imports the SDK's Node entry", file: "packages/server/dashboard/src/api.ts", source: `import { TaskClient } from "@taskq/sdk";`, specifier: "@taskq/sdk", rules: ["d"] },
  { name: "dashboard imports the protocol", file: "packages/server/dashboard/src/dom.ts", source: `import { TaskStatus } from "@taskq/protocol";`, specifier: "@taskq/protocol", rules: ["d"] },
  { name: "protocol imports the SDK", file: "packages/protocol/src/x.ts", source: `export * from "@taskq/sdk";`, specifier: "@taskq/sdk", rules: ["e", "g"] },
  { name: "SDK imports the server", file: "packages/sdk/src/x.ts", source: `import { startReplica } from "@taskq/server";`, specifier: "@taskq/server", rules: ["e", "g"] },
  { name: "relative import leaves its package", file: "packages/cli/src/x.ts", source: `import { createLogger } from "../../server/src/log.js";`, specifier: "../../server/src/log.js", rules: ["f"] },
  { name: "SDK imports an undeclared package", file: "packages/sdk/src/x.ts", source: `import pg from "pg";`, specifier: "pg", rules: ["g"] },
  { name: "an undeclared package's subpath", file: "packages/protocol/src/x.ts", source: `import { x } from "@connectrpc/connect/protocol";`, specifier: "@connectrpc/connect/protocol", rules: ["g"] },
  { name: "server (not bundled) imports a devDependency", file: "packages/server/src/x.ts", source: `import { createConnectTransport } from "@connectrpc/connect-web";`, specifier: "@connectrpc/connect-web", rules: ["g"] },
  { name: "a built-in without node:", file: "packages/cli/src/x.ts", source: `import { readFile } from "fs/promises";`, specifier: "fs/promises", rules: ["g"] },
  { name: "browser entry imports a built-in", file: "packages/sdk/src/portable.ts", source: `import { Buffer } from "node:buffer";`, specifier: "node:buffer", rules: ["h"] },
  { name: "browser entry reaches connect-node", file: "packages/sdk/src/client-core.ts", source: `import { createGrpcTransport } from "@connectrpc/connect-node";`, specifier: "@connectrpc/connect-node", rules: ["h"] },
];

function check(files: Record<string, string>): Crossing[] {
  return checkLayering({ files: new Map(Object.entries(files)), manifests: MANIFESTS });
}

test("a tree that keeps every rule has no crossings", () => {
  assert.deepEqual(check(CLEAN).map(formatCrossing), []);
});

test("every rule has a planted crossing", () => {
  assert.deepEqual([...new Set(PLANTED.flatMap((p) => p.rules))].sort(), Object.keys(RULES).sort());
});

for (const planted of PLANTED) {
  test(`reported: ${planted.name}`, () => {
    const source = `${CLEAN[planted.file] ?? ""}\n${planted.source}`;
    const crossings = check({ ...CLEAN, [planted.file]: source });
    // Only the planted import crosses, on its own line (the last), and it breaks exactly these rules.
    assert.deepEqual(
      crossings.map((c) => [c.file, c.line, c.specifier]),
      planted.rules.map(() => [planted.file, source.split("\n").length, planted.specifier]),
    );
    assert.deepEqual(crossings.map((c) => c.rule).sort(), [...planted.rules].sort());
  });
}

test("the browser entry's rule follows relative imports, and only from portable.ts", () => {
  const files: Record<string, string> = { ...CLEAN, "packages/sdk/src/deep.ts": `import { inspect } from "node:util";` };
  assert.deepEqual(check(files), [], "deep.ts is not reached from portable.ts yet");
  files["packages/sdk/src/client-core.ts"] += `\nimport { z } from "./deep.js";`;
  assert.deepEqual(check(files).map((c) => [c.file, c.specifier, c.rule]), [["packages/sdk/src/deep.ts", "node:util", "h"]]);
});

test("a crossing prints as one line: file and line, the import, the rule", () => {
  const line = formatCrossing({ file: "packages/server/src/metrics.ts", line: 11, specifier: "./engine/sql/lease.js", rule: "b" });
  assert.equal(line, `packages/server/src/metrics.ts:11: imports "./engine/sql/lease.js": rule b: ${RULES.b}`);
});

test("the real tree has no crossings", () => {
  const tree = loadSourceTree(path.join(import.meta.dirname, ".."));
  assert.ok(tree.files.has("packages/server/src/engine/index.ts") && tree.files.has("packages/sdk/src/portable.ts"), "the tree was read");
  assert.deepEqual(checkLayering(tree).map(formatCrossing), []);
});
