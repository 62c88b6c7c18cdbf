/**
 * One connection attempt of a worker: a WorkerService.Connect stream from hello to its end.
 *
 * States (`mode`):
 *   connecting → hello and the initial credits are queued; the stream opens
 *   open       → welcome received; leases arrive and run; finishes, logs and status values go out
 *   draining   → drain() called (from connecting or open): no more credits are granted. Credits cannot
 *                be withdrawn, so leases may still arrive: each is declined (Finish.decline: back to the
 *                queue at once, the attempt not counted), never run. The stream half-closes once the
 *                running tasks have finished (or the worker gave up waiting for them) and the server
 *                has answered every finish sent (declines included), or ANSWER_WAIT_MS after that when
 *                it has not
 *   lapsed     → the leases' deadline passed (below): every task is aborted, leases that still arrive
 *                are declined, and the stream ends once what is queued has been written (at most
 *                LAPSE_FLUSH_MS), so those declines reach a server that is still there
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
 * the deadline is never started; it is declined, which the server refuses if the lease went elsewhere.
 *
 * Each lease is run by the Worker's runner; a finished task returns its credit so the server may
 * send the next lease. Messages about a task carry its lease token. The server answers each finish
 * with a FinishAck (its `error` set when it recorded the attempt as failed instead of the outcome
 * sent) or a FinishRejected; rejections and such acks are reported through hooks.note with their code.
 *
 * Once the server's welcome says it understands batches, the messages queued in one turn of the event
 * loop (finishes, their credits, log steps) go out as one WorkerMessage.batch; the hello says this
 * worker understands them too, so leases that the server claimed together arrive as one message.
 */
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import {
  CancelReason,
  WorkerService,
  type Lease,
  type ServerMessage,
  type WorkerMessage,
} from "@taskq/protocol";
import { AsyncQueue } from "@taskq/protocol";
import { BATCH_BYTES, MAX_BATCH_MESSAGES, bytesBound } from "@taskq/protocol";
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from "../defaults.js";
import { Code, TaskqError } from "../errors.js";
import { rejectCodeName, statusName } from "../types.js";
import type { EncodedField } from "@taskq/protocol";
import { batchMessageOf, creditsBytes, finishBytes, messageBytes, workerMessageOf, type MessageInit, type Outcome } from "./worker-wire.js";

export interface StreamSessionHooks {
  /** Runs one lease; resolves when its finish has been queued (session.finish). */
  run(lease: Lease, session: StreamSession): Promise<void>;
  /** A lease of this session was canceled by the server. */
  cancel(leaseToken: string, reason: "interrupted" | "timed_out" | "shutdown"): void;
  /** The session's leases lapsed: abort every task it runs, now. */
  lapsed(): void;
  /** Something worth telling the operator (rejections, declined leases, protocol notes). */
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

export type { Outcome };
type Mode = "connecting" | "open" | "draining" | "lapsed" | "ended";

/** A message waiting to be sent, with an upper bound of its encoded size (see batching.ts) and its place in the outbox. */
interface Outgoing {
  message: EncodedField;
  bytes: number;
  seq: number;
}

const CANCEL_REASONS: Record<number, "interrupted" | "timed_out" | "shutdown"> = {
  [CancelReason.INTERRUPTED]: "interrupted",
  [CancelReason.TIMED_OUT]: "timed_out",
  [CancelReason.SHUTDOWN]: "shutdown",
};

/**
 * How long a draining session waits, once its tasks have finished, for the server to answer the
 * finishes it sent before it half-closes anyway (a server whose database is down retries writing them
 * and answers late; half-closing does not lose them, it only ends the time in which a late lease can
 * still be declined).
 */
const ANSWER_WAIT_MS = 5_000;
/** How long a lapsed session waits for what it queued (declines) to be written before it ends the stream. */
const LAPSE_FLUSH_MS = 1_000;

export class StreamSession {
  private readonly outbox = new AsyncQueue<Outgoing>();
  private readonly running = new Set<Promise<void>>();
  private mode: Mode = "connecting";
  /** The server understands batches (its welcome said so). */
  private batching = false;
  private creditsToReturn = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  /** The last heartbeat seq sent (0: the hello), and when each unanswered one was sent (performance.now()). */
  private heartbeatSeq = 0n;
  private readonly heartbeatSentAt = new Map<bigint, number>();
  /** Until when the session's leases are valid (performance.now()); null while the server has not said. */
  private validUntil: number | null = null;
  private lapseTimer: NodeJS.Timeout | null = null;
  /** Ends the stream from this side (the leases lapsed), with the reason as the stream's error. */
  private readonly ending = new AbortController();
  /** The lease tokens of finishes sent that the server has not answered yet (FinishAck or FinishRejected). */
  private readonly unanswered = new Set<string>();
  /** Messages queued, and written to the stream (the transport asked for the next one), counted alike. */
  private queuedCount = 0;
  private writtenCount = 0;
  /** Called when there is nothing left to wait for: every finish answered, everything queued written, or the stream ended. */
  private waiters: (() => void)[] = [];

  constructor(
    private readonly transport: Transport,
    private readonly hello: HelloInfo,
    private readonly hooks: StreamSessionHooks,
  ) {}

  /**
   * Queues a message; `bytes` bounds its encoded size (bytesBound) when it carries more than ids. False
   * when the stream is closing and the message will not be sent.
   */
  send(message: MessageInit, bytes = bytesBound(0, 0)): boolean {
    return this.sendBytes(messageBytes(message), bytes);
  }

  /** Queues the finish of a lease; a draining session waits for the server's answer before it half-closes. */
  finish(lease: { taskId: string; leaseToken: string }, outcome: Outcome, bytes = bytesBound(0, 0)): void {
    const { taskId, leaseToken } = lease;
    if (this.sendBytes(finishBytes(taskId, leaseToken, outcome), bytes)) this.unanswered.add(leaseToken);
  }

  /** Queues a message written to bytes already (worker-wire.ts). */
  private sendBytes(message: EncodedField, bytes: number): boolean {
    const queued = this.outbox.push({ message, bytes, seq: this.queuedCount + 1 });
    if (queued) this.queuedCount++;
    return queued;
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
    this.sendBytes(creditsBytes(this.hello.concurrency), bytesBound(0, 0));
    const both = AbortSignal.any([signal, this.ending.signal]);
    try {
      for await (const m of client.connect(this.outgoing(), { signal: both })) this.receive(m.message, false);
      if (this.ending.signal.aborted) throw this.ending.signal.reason;
    } catch (err) {
      throw this.ending.signal.aborted ? this.ending.signal.reason : err;
    } finally {
      this.mode = "ended";
      if (this.heartbeat) clearInterval(this.heartbeat);
      if (this.lapseTimer) clearTimeout(this.lapseTimer);
      this.outbox.close();
      this.wake();
    }
  }

  /**
   * Stop taking tasks: grant no more credits, decline leases that still arrive, and half-close the
   * stream once the running tasks have finished and the server has answered their finishes. When
   * `leaveRunning` resolves first, tasks still running are waited for no more: they send no finish, and
   * the server returns their leases when the stream ends.
   */
  async drain(leaveRunning: Promise<void> = new Promise<void>(() => {})): Promise<void> {
    if (this.mode === "connecting" || this.mode === "open") this.mode = "draining";
    const finished = (async () => {
      while (this.running.size > 0) await Promise.allSettled([...this.running]);
    })();
    await Promise.race([finished, leaveRunning]);
    await this.until(() => this.unanswered.size === 0, ANSWER_WAIT_MS);
    this.outbox.close();
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

  /** True while the leases are valid; once their deadline has passed, the session lapses (and stays lapsed). */
  private lapseIfPast(): boolean {
    if (this.mode === "lapsed" || this.mode === "ended") return false;
    if (this.validUntil === null || performance.now() < this.validUntil) return true;
    const late = Math.round(performance.now() - this.validUntil);
    this.mode = "lapsed";
    this.hooks.lapsed();
    const error = new TaskqError(`the session's leases lapsed ${late} ms ago: no heartbeat ack from the server in time`, Code.Aborted);
    void this.until(() => this.writtenCount === this.queuedCount, LAPSE_FLUSH_MS).then(() => this.ending.abort(error));
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

  /**
   * The outbox as the stream's messages: one at a time until the server has said it takes batches. The
   * transport asks for the next message once it has written the last, which is when that counts as written.
   */
  private async *outgoing(): AsyncGenerator<WorkerMessage> {
    const session = this;
    const limits = {
      get count() {
        return session.batching ? MAX_BATCH_MESSAGES : 1;
      },
      bytes: BATCH_BYTES,
    };
    for await (const batch of this.outbox.batches((o) => o.bytes, limits)) {
      yield batch.length === 1 ? workerMessageOf(batch[0].message) : batchMessageOf(batch.map((o) => o.message));
      this.writtenCount = batch[batch.length - 1].seq;
      this.wake();
    }
  }

  private receive(msg: ServerMessage["message"], inBatch: boolean): void {
    switch (msg.case) {
      case "welcome": {
        const every = msg.value.heartbeatInterval ? durationMs(msg.value.heartbeatInterval) : DEFAULT_HEARTBEAT_INTERVAL_MS;
        this.heartbeat = setInterval(() => this.sendHeartbeat(), every);
        this.batching = msg.value.acceptsBatches;
        if (this.mode === "connecting") this.mode = "open";
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
        // Run only while open and within the deadline: a lease that comes later (held back by the network,
        // or read late by this process) may already run elsewhere, and a stopping worker runs nothing new.
        if (this.mode === "open" && performance.now() < (this.validUntil ?? Infinity)) this.start(msg.value);
        else this.decline(msg.value);
        break;
      case "cancel":
        this.hooks.cancel(msg.value.leaseToken, CANCEL_REASONS[msg.value.reason] ?? "interrupted");
        break;
      case "finishAck": {
        const { taskId, leaseToken, error } = msg.value;
        if (error) this.hooks.note("finish recorded as failed", { task: taskId, status: statusName(msg.value.status), error });
        this.answered(leaseToken);
        break;
      }
      case "finishRejected":
        this.hooks.note("finish rejected", { task: msg.value.taskId, code: rejectCodeName(msg.value.code), reason: msg.value.reason });
        this.answered(msg.value.leaseToken);
        break;
      case "updateRejected":
        this.hooks.note("update rejected", { task: msg.value.taskId, code: rejectCodeName(msg.value.code), reason: msg.value.reason });
        break;
    }
  }

  /**
   * Gives a lease back unrun: the worker is stopping (credits cannot be withdrawn, so leases still come
   * while it drains), or the lease came after the session's deadline and may already run elsewhere (a
   * lease that went elsewhere is fenced: the server refuses the decline). Returns no credit.
   */
  private decline(lease: Lease): void {
    const why = this.mode === "draining" ? "the worker is stopping" : "the session's leases lapsed before it could start";
    this.hooks.note("lease declined", { task: lease.taskId, reason: why });
    this.finish(lease, { case: "decline", value: {} });
    this.lapseIfPast();
  }

  private start(lease: Lease): void {
    const job = this.hooks.run(lease, this).finally(() => {
      this.running.delete(job);
      if (this.mode === "open") this.returnCredit();
    });
    this.running.add(job);
  }

  /** Gives a finished task's credit back; credits freed in the same turn of the event loop go as one message. */
  private returnCredit(): void {
    if (this.creditsToReturn++ > 0) return;
    setImmediate(() => {
      const count = this.creditsToReturn;
      this.creditsToReturn = 0;
      if (this.mode === "open") this.sendBytes(creditsBytes(count), bytesBound(0, 0));
    });
  }

  private answered(leaseToken: string): void {
    if (this.unanswered.delete(leaseToken)) this.wake();
  }

  /** Resolves once `done()` holds (checked whenever something is answered or written), the stream has ended, or `timeoutMs` passed. */
  private until(done: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = () => {
        settled = true;
        clearTimeout(timer);
        resolve();
      };
      const check = () => {
        if (settled) return;
        if (done() || this.mode === "ended") settle();
        else this.waiters.push(check);
      };
      const timer = setTimeout(settle, timeoutMs);
      check();
    });
  }

  private wake(): void {
    for (const check of this.waiters.splice(0)) check();
  }
}
