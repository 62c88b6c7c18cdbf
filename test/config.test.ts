/** Server configuration: the config file's sections, environment values, and every problem reported at once. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { ConfigError, loadConfig } from "../packages/server/src/config.js";
import { tokenDigest } from "../packages/server/src/rpc/auth.js";
import { DEFAULT_CANCEL_GRACE_MS, DEFAULT_STALE_CHECK_MS, DEFAULT_TIMEOUT_MS } from "../packages/server/src/engine/index.js";

let dir: string;
before(async () => (dir = await mkdtemp(path.join(tmpdir(), "taskq-config-"))));
after(() => rm(dir, { recursive: true, force: true }));

const file = async (name: string, content: unknown) => {
  const p = path.join(dir, name);
  await writeFile(p, JSON.stringify(content));
  return p;
};

test("defaults, lifecycle settings from the environment, queues and task types from the file", async () => {
  const defaults = loadConfig({});
  assert.equal(defaults.staleCheckMs, DEFAULT_STALE_CHECK_MS);
  assert.equal(defaults.cancelGraceMs, DEFAULT_CANCEL_GRACE_MS);
  assert.equal(defaults.defaultTimeoutMs, DEFAULT_TIMEOUT_MS);
  assert.deepEqual(Object.keys(defaults.queues), ["default", "scheduled"]);

  const config = loadConfig({
    TASKQ_STALE_CHECK_MS: "5000",
    TASKQ_CANCEL_GRACE_MS: "0",
    TASKQ_DEFAULT_TIMEOUT_MS: "60000",
    TASKQ_CONFIG: await file("good.json", {
      queues: { video: { timeout_ms: 7_200_000, max_attempts: 3 } },
      task_types: { "video.encode": { timeout_ms: 600_000 } },
      schedules: { thumbnails: { cron: "0 3 * * *", time_zone: "Europe/Berlin", type: "thumbnails.clean", queue: "video" } },
    }),
  });
  assert.equal(config.staleCheckMs, 5_000);
  assert.equal(config.cancelGraceMs, 0);
  assert.equal(config.defaultTimeoutMs, 60_000);
  assert.deepEqual(config.queues.video, { timeoutMs: 7_200_000, maxAttempts: 3 });
  assert.deepEqual(config.taskTypes, { "video.encode": { timeoutMs: 600_000 } });
  assert.deepEqual(config.schedules, [
    { name: "thumbnails", cron: "0 3 * * *", timeZone: "Europe/Berlin", type: "thumbnails.clean", queue: "video", params: {}, title: undefined, priority: 0 },
  ]);
});

test("every problem is reported together", async () => {
  const bad = await file("bad.json", {
    queues: { "no spaces": {}, slow: { timeout_ms: -1, colour: "red" } },
    task_types: { render: { timeout_ms: "soon" } },
    schedules: {
      nightly: { cron: "0 25 * * *", type: "report" },
      weekly: { cron: "0 9 * * 1", time_zone: "Mars/Base", type: "report" },
      stray: { cron: "*/5 * * * *", type: "report", queue: "nope" },
      short: { cron: "* * * *", type: "report" },
    },
    cron_jobs: {},
  });
  const err = (() => {
    try {
      loadConfig({ TASKQ_STALE_CHECK_MS: "10", TASKQ_CANCEL_GRACE_MS: "x", TASKQ_CONFIG: bad });
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof ConfigError);
  const expected = [
    /TASKQ_STALE_CHECK_MS: "10" must be an integer from 1000/,
    /TASKQ_CANCEL_GRACE_MS: "x"/,
    /"cron_jobs" is not a known setting/,
    /schedules\.nightly\.cron: "0 25 \* \* \*" is not a valid cron expression: Invalid value for hour/,
    /schedules\.weekly\.cron: "Mars\/Base" is not an IANA time zone/,
    /schedules\.stray\.queue: queue "nope" is not defined \(defined: default, no spaces, scheduled, slow\)/,
    /schedules\.short\.cron: "\* \* \* \*" must have 5 fields/,
    /queues name "no spaces" is not valid/,
    /queues\.slow\.timeout_ms must be an integer ≥ 1/,
    /queues\.slow\.colour is not a known setting/,
    /task_types\.render\.timeout_ms must be an integer ≥ 1/,
  ];
  for (const pattern of expected) assert.ok(err.problems.some((p) => pattern.test(p)), `missing ${pattern}: ${err.problems.join(" | ")}`);
  assert.equal(err.problems.length, expected.length);
});

const problemsOf = (src: Parameters<typeof loadConfig>[0]): string[] => {
  try {
    loadConfig(src);
    return [];
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems;
  }
};

test("auth tokens from the file: roles, token or its sha256, every problem named", async () => {
  const config = loadConfig({
    TASKQ_CONFIG: await file("auth.json", {
      auth: {
        tokens: [
          { name: "ci", role: "client", token: "a-long-enough-token-1" },
          { name: "ops", role: "admin", sha256: tokenDigest("another-long-token-2").toString("hex") },
        ],
      },
    }),
  });
  assert.deepEqual(
    config.authTokens.map((t) => [t.name, t.role, t.sha256.toString("hex")]),
    [
      ["ci", "client", tokenDigest("a-long-enough-token-1").toString("hex")],
      ["ops", "admin", tokenDigest("another-long-token-2").toString("hex")],
    ],
  );
  const problems = problemsOf({
    TASKQ_CONFIG: await file("bad-auth.json", {
      auth: {
        tokens: [
          { name: "a", role: "root", token: "a-long-enough-token-1" },
          { name: "a", role: "client", token: "short" },
          { name: "b", role: "worker" },
          { name: "c", role: "worker", sha256: "abc", colour: "red" },
        ],
      },
    }),
  });
  const expected = [
    /auth\.tokens\[0\]\.role must be one of client, worker, admin/,
    /auth\.tokens\[1\]\.name: "a" is used twice/,
    /auth\.tokens\[1\]\.token must be at least 16 characters/,
    /auth\.tokens\[2\]: set exactly one of token and sha256/,
    /auth\.tokens\[3\]\.sha256 must be 64 hex digits/,
    /auth\.tokens\[3\]\.colour is not a known setting/,
  ];
  for (const pattern of expected) assert.ok(problems.some((p) => pattern.test(p)), `missing ${pattern}: ${problems.join(" | ")}`);
  assert.equal(problems.length, expected.length, problems.join(" | "));
});

test("no auth is refused beyond loopback unless forced; TLS needs a certificate and a key", async () => {
  assert.deepEqual(problemsOf({ TASKQ_HOST: "127.0.0.1" }), []);
  assert.deepEqual(problemsOf({ TASKQ_HOST: "::1" }), []);
  assert.match(problemsOf({ TASKQ_HOST: "0.0.0.0" }).join(), /0\.0\.0\.0 is reachable from other machines and no auth tokens are configured/);
  assert.deepEqual(problemsOf({ TASKQ_HOST: "0.0.0.0", TASKQ_INSECURE_NO_AUTH: "force" }), []);
  assert.match(problemsOf({ TASKQ_HOST: "0.0.0.0", TASKQ_INSECURE_NO_AUTH: "yes" }).join(), /TASKQ_INSECURE_NO_AUTH: "yes" must be force/);
  const withTokens = await file("tokens.json", { auth: { tokens: [{ name: "w", role: "worker", token: "a-long-enough-token-1" }] } });
  assert.deepEqual(problemsOf({ TASKQ_HOST: "10.1.2.3", TASKQ_CONFIG: withTokens }), []);

  const pem = await file("cert.pem", "not really a certificate");
  assert.match(problemsOf({ TASKQ_TLS_CERT: pem }).join(), /set both or neither/);
  assert.match(problemsOf({ TASKQ_TLS_CERT: pem, TASKQ_TLS_KEY: path.join(dir, "missing.key") }).join(), /TASKQ_TLS_KEY: cannot read/);
  assert.match(problemsOf({ TASKQ_TLS_CLIENT_CA: pem }).join(), /TASKQ_TLS_CLIENT_CA: needs TASKQ_TLS_CERT/);
  assert.ok(loadConfig({ TASKQ_TLS_CERT: pem, TASKQ_TLS_KEY: pem }).tls);
});

test("keys' settings of a queue: max_running_per_key, key_weights and urgent_priority, every problem named", async () => {
  const config = loadConfig({
    TASKQ_CONFIG: await file("keys.json", {
      queues: {
        tenants: {
          max_workers: 8,
          max_running_per_key: 2,
          key_weights: { "acme-co": 3, "tiny:1": 1 },
          urgent_priority: 100,
          rate_limit: { tasks: 100, per_ms: 1_000, burst: 20 },
          rate_limit_per_key: { tasks: 5, per_ms: 60_000 },
        },
      },
    }),
  });
  assert.deepEqual(config.queues.tenants, {
    maxWorkers: 8,
    maxRunningPerKey: 2,
    keyWeights: { "acme-co": 3, "tiny:1": 1 },
    urgentPriority: 100,
    rateLimit: { tasks: 100, perMs: 1_000, burst: 20 },
    rateLimitPerKey: { tasks: 5, perMs: 60_000, burst: 1 },
  });
  const problems = problemsOf({
    TASKQ_CONFIG: await file("bad-keys.json", {
      queues: {
        a: { max_running_per_key: 0, key_weights: { ok: 2, zero: 0, "": 1, [`${"k".repeat(201)}`]: 1 }, urgent_priority: 0 },
        b: { max_running_per_key: "2", key_weights: ["acme"], urgent_priority: 2 ** 31 },
        c: { rate_limit: { tasks: 0, per_ms: 1.5, burst: 0, every: 1 }, rate_limit_per_key: 10 },
      },
    }),
  });
  const expected = [
    /queues\.a\.max_running_per_key must be an integer ≥ 1/,
    /queues\.a\.key_weights\.zero must be an integer from 1 to 1000/,
    /queues\.a\.key_weights: "" is not a concurrency key/,
    /queues\.a\.key_weights: "k{40}" is not a concurrency key \(1 to 200 characters, no NUL\)/,
    /queues\.a\.urgent_priority must be an integer priority from 1 to 2147483647/,
    /queues\.b\.max_running_per_key must be an integer ≥ 1/,
    /queues\.b\.key_weights must be an object of concurrency key → weight/,
    /queues\.b\.urgent_priority must be an integer priority/,
    /queues\.c\.rate_limit\.tasks must be an integer from 1 to 1000000/,
    /queues\.c\.rate_limit\.per_ms must be an integer from 1 to 86400000/,
    /queues\.c\.rate_limit\.burst must be an integer from 1 to 1000000/,
    /queues\.c\.rate_limit\.every is not a known setting/,
    /queues\.c\.rate_limit_per_key must be \{ "tasks": N, "per_ms": T \} with an optional "burst"/,
  ];
  for (const pattern of expected) assert.ok(problems.some((p) => pattern.test(p)), `missing ${pattern}: ${problems.join(" | ")}`);
  assert.equal(problems.length, expected.length, problems.join(" | "));
});
