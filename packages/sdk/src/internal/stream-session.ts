/**
 * One connection attempt of a worker: a WorkerService.Connect stream from hello to its end.
 *
 * States:
 *   connecting → hello and the initial credits are queued; the stream opens
 *   open       → welcome received; leases arrive and run; finishes, logs and status values go out
 *   draining   → drain() called: no more credits are granted; the stream half-closes once the
 *                running tasks have finished (or at once when none run)
 *   ended      → the stream ended (server gone, network, drain done, leases lapsed); tasks still
 *                running here are aborted, because the server has returned their leases to the queue
 *
 * Lease validity: every heartbeat carries a seq, and the server's HeartbeatAck says how long after
 * that heartbeat was sent the session's leases stay valid (the welcome does the same for the hello).
 * The deadline is counted from the sending, on this process's clock, so an ack that arrives late (a
 * partition that held it) promises nothing it could not keep. When the deadline passes with no newer
 * ack — the server is silent, the way back is cut, or the server's database no longer confirms the
 * session — every task of the session is aborted at once, the stream ends, and the worker connects
 * again: the server may already have given those leases to another worker. A lease that arrives after
 * the deadline is never started.
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
} from "@taskq/protocol";
import { AsyncQueue } from "@taskq/protocol";
import { BATCH_BYTES, MAX_BATCH_MESSAGES, bytesBound } from "@taskq/protocol";
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from "../defaults.js";
import { Code, TaskqError } from "../errors.js";

export interface StreamSessionHooks {
  /** Runs one lease; resolves when its finish has been sent. */
  run(lease: Lease, session: StreamSession): Promise<void>;
  /** A lease of this session was canceled by the server. */
  cancel(leaseToken: string, reason: "interrupted" | "timed_out" | "shutdown"): void;
  /** The session's leases lapsed: abort every task it runs, now. */
  lapsed(): void;
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
  /** The last heartbeat seq sent (0: the hello), and when each unanswered one was sent (performance.now()). */
  private heartbeatSeq = 0n;
  private readonly heartbeatSentAt = new Map<bigint, number>();
  /** Until when the session's leases are valid (performance.now()); null while the server has not said. */
  private validUntil: number | null = null;
  private lapseTimer: NodeJS.Timeout | null = null;
  /** Ends the stream from this side (the leases lapsed). */
  private readonly ending = new AbortController();

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
    this.heartbeatSentAt.set(0n, performance.now());
    this.send({ case: "credits", value: { count: this.hello.concurrency } });
    const both = AbortSignal.any([signal, this.ending.signal]);
    try {
      for await (const m of client.connect(this.outgoing(), { signal: both })) this.receive(m.message, false);
      if (this.ending.signal.aborted) throw this.ending.signal.reason;
    } catch (err) {
      throw this.ending.signal.aborted ? this.ending.signal.reason : err;
    } finally {
      if (this.heartbeat) clearInterval(this.heartbeat);
      if (this.lapseTimer) clearTimeout(this.lapseTimer);
      this.outbox.close();
    }
  }

  /** The server promised the leases until `validForMs` after the heartbeat `seq` (0: the hello) was sent. */
  private extend(seq: bigint, validForMs: number): void {
    const sentAt = this.heartbeatSentAt.get(seq);
    if (sentAt === undefined) return;
    for (const s of this.heartbeatSentAt.keys()) if (s <= seq) this.heartbeatSentAt.delete(s);
    const until = sentAt + validForMs;
    if (this.validUntil !== null && until <= this.validUntil) return;
    this.validUntil = until;
    if (this.lapseTimer) clearTimeout(this.lapseTimer);
    // Timers run before the socket is read: after a busy spell, an ack already waiting is read first
    // (setImmediate), which is sound because deadlines count from when the heartbeat was sent.
    this.lapseTimer = setTimeout(() => setImmediate(() => this.lapseIfPast()), Math.max(0, until - performance.now()) + 1);
  }

  /** True while the leases are valid; once they lapsed, aborts every task and ends the stream. */
  private lapseIfPast(): boolean {
    if (this.validUntil === null || performance.now() < this.validUntil) return true;
    if (!this.ending.signal.aborted) {
      const late = Math.round(performance.now() - this.validUntil);
      this.hooks.lapsed();
      const message = `the session's leases lapsed ${late} ms ago: no heartbeat ack from the server in time`;
      this.ending.abort(new TaskqError(message, Code.Aborted));
    }
    return false;
  }

  private sendHeartbeat(): void {
    if (!this.lapseIfPast()) return;
    // A server that promises no validity (an older one) does not answer: ask nothing of it.
    if (this.validUntil === null) return void this.send({ case: "heartbeat", value: {} });
    const seq = ++this.heartbeatSeq;
    this.heartbeatSentAt.set(seq, performance.now());
    this.send({ case: "heartbeat", value: { seq } });
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
        const every = msg.value.heartbeatInterval ? durationMs(msg.value.heartbeatInterval) : DEFAULT_HEARTBEAT_INTERVAL_MS;
        this.heartbeat = setInterval(() => this.sendHeartbeat(), every);
        this.batching = msg.value.acceptsBatches;
        if (msg.value.leaseValidity) this.extend(0n, durationMs(msg.value.leaseValidity));
        this.hooks.opened(msg.value.sessionId);
        break;
      }
      case "heartbeatAck":
        if (msg.value.leaseValidity) this.extend(msg.value.seq, durationMs(msg.value.leaseValidity));
        break;
      case "batch":
        if (!inBatch) for (const m of msg.value.messages) this.receive(m.message, true);
        break;
      case "lease":
        // A lease that comes after the deadline (held back by the network, or read late by this process)
        // may already run elsewhere: never start it.
        if (this.lapseIfPast()) this.start(msg.value);
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
