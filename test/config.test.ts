/** Server configuration: the config file's sections, environment values, and every problem reported at once. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { ConfigError, loadConfig } from "../server/config.js";
import { DEFAULT_CANCEL_GRACE_MS, DEFAULT_STALE_CHECK_MS, DEFAULT_TIMEOUT_MS } from "../server/engine/engine.js";

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
