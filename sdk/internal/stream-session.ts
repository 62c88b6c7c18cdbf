/**
 * One connection attempt of a worker: a WorkerService.Connect stream from hello to its end.
 *
 * States:
 *   connecting → hello and the initial credits are queued; the stream opens
 *   open       → welcome received; leases arrive and run; finishes, logs and status values go out
 *   draining   → drain() called: no more credits are granted; the stream half-closes once the
 *                running tasks have finished (or at once when none run)
 *   ended      → the stream ended (server gone, network, drain done); tasks still running here are
 *                aborted, because the server has already returned their leases to the queue
 *
 * Each lease is run by the Worker's runner; a finished task returns its credit so the server may
 * send the next lease. Messages about a task carry its lease token.
 *
 * Once the server's welcome says it understands batches, the messages queued in one turn of the event
 * loop (finishes, their credits, log steps) go out as one WorkerMessage.batch; the hello says this
 * worker understands them too, so leases that the server claimed together arrive as one message.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import {
  CancelReason,
  WorkerMessageSchema,
  WorkerService,
  type Lease,
  type ServerMessage,
  type WorkerMessage,
} from "../gen/taskq/v1/worker_pb.js";
import { AsyncQueue } from "./async-queue.js";
import { BATCH_BYTES, MAX_BATCH_MESSAGES, bytesBound } from "./batching.js";

export interface StreamSessionHooks {
  /** Runs one lease; resolves when its finish has been sent. */
  run(lease: Lease, session: StreamSession): Promise<void>;
  /** A lease of this session was canceled by the server. */
  cancel(leaseToken: string, reason: "interrupted" | "timed_out" | "shutdown"): void;
  /** Something worth telling the operator (rejections, protocol notes). */
  note(message: string, detail?: Record<string, unknown>): void;
  /** The server welcomed the session. */
  opened(sessionId: string): void;
}

export interface HelloInfo {
  workerName: string;
  taskTypes: { name: string; timeoutMs?: number; schedule?: string; timeZone?: string }[];
  queues: string[];
  concurrency: number;
}

type MessageInit = MessageInitShape<typeof WorkerMessageSchema>["message"];

/** A message waiting to be sent, with an upper bound of its encoded size (see batching.ts). */
interface Outgoing {
  message: WorkerMessage;
  bytes: number;
}

const CANCEL_REASONS: Record<number, "interrupted" | "timed_out" | "shutdown"> = {
  [CancelReason.INTERRUPTED]: "interrupted",
  [CancelReason.TIMED_OUT]: "timed_out",
  [CancelReason.SHUTDOWN]: "shutdown",
};

export class StreamSession {
  private readonly outbox = new AsyncQueue<Outgoing>();
  private readonly running = new Set<Promise<void>>();
  /** The server understands batches (its welcome said so). */
  private batching = false;
  private draining = false;
  private creditsToReturn = 0;
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(
    private readonly transport: Transport,
    private readonly hello: HelloInfo,
    private readonly hooks: StreamSessionHooks,
  ) {}

  /** Queues a message; `bytes` bounds its encoded size (bytesBound) when it carries more than ids. */
  send(message: MessageInit, bytes = bytesBound(0, 0)): void {
    this.outbox.push({ message: create(WorkerMessageSchema, { message }), bytes });
  }

  /** Runs the stream to its end. Rejects when the stream fails; resolves when it ends cleanly. */
  async run(signal: AbortSignal): Promise<void> {
    const client = createClient(WorkerService, this.transport);
    this.send({
      case: "hello",
      value: {
        workerName: this.hello.workerName,
        taskTypes: this.hello.taskTypes.map((t) => ({
          name: t.name,
          timeout: t.timeoutMs === undefined ? undefined : durationFromMs(t.timeoutMs),
          schedule: t.schedule ?? "",
          timeZone: t.timeZone ?? "",
        })),
        queues: this.hello.queues,
        concurrency: this.hello.concurrency,
        acceptsBatches: true,
      },
    });
    this.send({ case: "credits", value: { count: this.hello.concurrency } });
    try {
      for await (const m of client.connect(this.outgoing(), { signal })) this.receive(m.message, false);
    } finally {
      if (this.heartbeat) clearInterval(this.heartbeat);
      this.outbox.close();
    }
  }

  /** The outbox as the stream's messages: one at a time until the server has said it takes batches. */
  private async *outgoing(): AsyncGenerator<WorkerMessage> {
    const session = this;
    const limits = {
      get count() {
        return session.batching ? MAX_BATCH_MESSAGES : 1;
      },
      bytes: BATCH_BYTES,
    };
    for await (const batch of this.outbox.batches((o) => o.bytes, limits)) {
      yield batch.length === 1
        ? batch[0].message
        : create(WorkerMessageSchema, { message: { case: "batch", value: { messages: batch.map((o) => o.message) } } });
    }
  }

  private receive(msg: ServerMessage["message"], inBatch: boolean): void {
    switch (msg.case) {
      case "welcome": {
        const every = msg.value.heartbeatInterval ? durationMs(msg.value.heartbeatInterval) : 10_000;
        this.heartbeat = setInterval(() => this.send({ case: "heartbeat", value: {} }), every);
        this.batching = msg.value.acceptsBatches;
        this.hooks.opened(msg.value.sessionId);
        break;
      }
      case "batch":
        if (!inBatch) for (const m of msg.value.messages) this.receive(m.message, true);
        break;
      case "lease":
        this.start(msg.value);
        break;
      case "cancel":
        this.hooks.cancel(msg.value.leaseToken, CANCEL_REASONS[msg.value.reason] ?? "interrupted");
        break;
      case "finishRejected":
        this.hooks.note("finish rejected", { task: msg.value.taskId, reason: msg.value.reason });
        break;
      case "updateRejected":
        this.hooks.note("update rejected", { task: msg.value.taskId, reason: msg.value.reason });
        break;
      case "finishAck":
        break;
    }
  }

  /** Stop taking tasks; half-close the stream once running tasks have finished. */
  async drain(): Promise<void> {
    this.draining = true;
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
    this.outbox.close();
  }

  get runningCount(): number {
    return this.running.size;
  }

  private start(lease: Lease): void {
    const job = this.hooks.run(lease, this).finally(() => {
      this.running.delete(job);
      if (!this.draining) this.returnCredit();
    });
    this.running.add(job);
  }

  /** Gives a finished task's credit back; credits freed in the same turn of the event loop go as one message. */
  private returnCredit(): void {
    if (this.creditsToReturn++ > 0) return;
    setImmediate(() => {
      const count = this.creditsToReturn;
      this.creditsToReturn = 0;
      if (!this.draining) this.send({ case: "credits", value: { count } });
    });
  }
}
