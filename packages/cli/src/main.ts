/**
 * `taskq`: the operator CLI. Each command is one call (or stream) against a server, printed as a
 * table or lines for people, or as JSON with --json for scripts. Exit codes: 0 success; 1 the server
 * refused, could not be reached, or a watched or run task did not complete; 2 a usage error.
 *
 * This entry knows the usage and the command names and nothing else: the SDK (and with it connect and
 * protobuf) is imported only by a command that needs it, so `taskq --help` and usage errors are quick.
 */
import { UsageError, out } from "./args.js";

// The default URL is the SDK's DEFAULT_URL (test/cli.test.ts checks they agree): read from the SDK,
// it would cost loading the SDK to print this.
const USAGE = `taskq: operate a taskq server (--url or TASKQ_URL, default http://127.0.0.1:50051;
       --token or TASKQ_TOKEN when the server has auth on; --ca FILE or TASKQ_CA to trust a TLS CA)

  taskq dispatch <type> [-p key=value]... [--params JSON] [--queue Q] [--title T] [--priority N]
                 [--delay-ms N] [--max-attempts N] [--timeout-ms N] [--idempotency-key K] [--concurrency-key K] [--watch]
  taskq status <id>                 one task: fields, why it waits, status values, log, result or
                                    error, every attempt
  taskq watch <id>                  the log live until the task ends; exit 1 unless it COMPLETED
  taskq interrupt <id> [--reason R]
  taskq active [--status S]... [--type T] [--search TEXT] [--sort COLUMN] [--desc] [--limit N]
  taskq history [--origin user|system|all] [--status S]... [--type T] [--limit N]
  taskq queues [pause <queue> | resume <queue>]
  taskq schedules
  taskq workers                     connected workers: replica, task types, queues, running, credits
  taskq run <module> <type> [--key=value]...
                                    immediate mode: run a handler of the Worker that <module> exports,
                                    here, with no server; log lines and the result go to stdout
                                    (a .ts module needs tsx installed in its project)

Options: --json for machine-readable output, --url URL, --token TOKEN, --ca FILE, --help.
Exit codes: 0 success, 1 failure (an error from the server, or a task that did not complete), 2 usage.`;

const SERVER_COMMANDS = new Set(["dispatch", "status", "watch", "interrupt", "active", "history", "queues", "schedules", "workers"]);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    out(USAGE);
    return command ? 0 : 2;
  }
  if (command === "run") return (await import("./immediate.js")).runImmediate(rest);
  if (!SERVER_COMMANDS.has(command)) throw new UsageError(`unknown command "${command}"`);
  return (await import("./commands.js")).runCommand(command, rest);
}

async function fail(err: unknown): Promise<number> {
  if (err instanceof UsageError) {
    process.stderr.write(`taskq: ${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  const { TaskqError } = await import("@taskq/sdk");
  const e = TaskqError.from(err);
  process.stderr.write(`taskq: ${e.codeName}: ${e.message}\n`);
  return 1;
}

main(process.argv.slice(2))
  .catch(fail)
  .then((code) => process.exit(code));
