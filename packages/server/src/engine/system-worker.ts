/**
 * The server's own worker: it runs built-in maintenance task types in-process, through an ordinary
 * worker session, so those tasks are leased, fenced, logged, retried and archived like any other and
 * appear in history. Every replica runs one with one credit; the queue decides which replica runs a
 * given task.
 *
 * States: stopped → running (session open, one credit) → stopped. A lease runs its handler; when the
 * handler settles the credit is granted again.
 */
import type { Logger } from "pino";
import type { WorkerSession, SessionSink } from "./session.js";
import type { JsonValue, LeasedTask, Outcome, WorkerHello } from "./types.js";

interface SystemTaskContext {
  task: LeasedTask;
  signal: AbortSignal;
  log(message: string): Promise<void>;
}

export type SystemHandler = (ctx: SystemTaskContext) => Promise<JsonValue>;

export class SystemWorker {
  private session: WorkerSession | null = null;
  private readonly running = new Map<string, AbortController>(); // lease token → abort

  constructor(
    private readonly handlers: Record<string, SystemHandler>,
    private readonly log: Logger,
  ) {}

  /** The hello the session opens with. */
  get hello(): WorkerHello {
    return {
      workerName: "taskq-server",
      concurrency: 1,
      taskTypes: new Map(Object.keys(this.handlers).map((type) => [type, null])),
      queues: [],
      schedules: [],
    };
  }

  /** Opens the session through `open` (the engine's openSession) and grants the first credit. */
  async start(open: (hello: WorkerHello, sink: SessionSink) => Promise<WorkerSession>): Promise<void> {
    this.session = await open(this.hello, {
      lease: (task) => void this.run(task),
      cancel: (_taskId, leaseToken) => this.running.get(leaseToken)?.abort(new Error("canceled")),
      // The engine ended the session: stop what runs, as any worker would; then, unless the server is
      // shutting down, open a new session (its leases lapsed while the database was out of reach).
      end: (reason, how) => {
        for (const abort of this.running.values()) abort.abort(new Error(reason));
        if (how === "now") void this.reopen(open);
      },
      stalledForMs: () => 0,
    });
    this.session.addCredits(1);
  }

  private async reopen(open: (hello: WorkerHello, sink: SessionSink) => Promise<WorkerSession>): Promise<void> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
      await new Promise((resolve) => setTimeout(resolve, delay).unref());
      try {
        return await this.start(open);
      } catch (err) {
        if ((err as { kind?: string }).kind === "unavailable" && /shutting down/.test((err as Error).message)) return;
        this.log.warn({ err: (err as Error).message }, "reopening the server's own worker session failed; trying again");
      }
    }
  }

  /** Marks the in-process session as heard from, so the engine never takes it for a silent worker. */
  keepAlive(): void {
    this.session?.touch();
  }


  private async run(task: LeasedTask): Promise<void> {
    const session = this.session!;
    const abort = new AbortController();
    this.running.set(task.leaseToken, abort);
    let outcome: Outcome;
    try {
      const handler = this.handlers[task.type];
      const result = await handler({
        task,
        signal: abort.signal,
        log: async (message) => void (await session.log(task.id, task.leaseToken, message)),
      });
      outcome = { kind: "success", result };
    } catch (err) {
      this.log.error({ err, task: task.id, type: task.type }, "built-in task failed");
      outcome = { kind: "retry", error: (err as Error).message, delayMs: null };
    } finally {
      this.running.delete(task.leaseToken);
    }
    try {
      await session.finish(task.id, task.leaseToken, outcome);
    } catch (err) {
      this.log.error({ err, task: task.id }, "recording a built-in task's outcome failed");
    }
    session.addCredits(1);
  }
}
