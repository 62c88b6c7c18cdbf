/**
 * WorkerService.Connect: one bidirectional stream per worker.
 *
 * States of a stream:
 *   awaiting hello → the first message must be a valid hello, else the stream ends with an error; a
 *                    stream that sends nothing for the silence limit ends with DEADLINE_EXCEEDED
 *   open           → welcome sent; credits, log steps, status values, heartbeats, finishes accepted.
 *                    A stream that has granted no credit within half the silence limit of the welcome
 *                    ends with FAILED_PRECONDITION: it could never receive a lease, and silence would
 *                    hide why
 *   closed         → the worker hung up, the connection broke, the engine ended the session, or the
 *                    server stopped: the engine session closes and every lease it still holds goes
 *                    back to the queue. This does not wait for the response to finish: a response
 *                    stuck writing to a worker that reads nothing may never finish.
 *
 * Liveness, both ways: a Heartbeat with a seq is answered by a HeartbeatAck carrying how long the
 * session's leases stay valid (only while the database confirms the session; see engine/session.ts).
 * The engine ends a session whose worker says nothing for the silence limit, or leaves the replies
 * unread (the response blocked writing) for as long.
 *
 * Messages about one task are handled in the order they came (a log step sent before a finish is
 * written before it); messages about different tasks run concurrently, so finishes that arrive
 * together are written together. A problem with one task is answered in-band (FinishRejected,
 * UpdateRejected, with a RejectReason) and the stream goes on. A finish is never refused for what it
 * carries: an outcome that cannot be recorded as sent (a result too large or not JSON, a bad retry
 * delay, no outcome) is recorded as a failed attempt saying why, in FinishAck.error too, so the task
 * never waits for a corrected finish that may not come.
 *
 * While the database cannot be reached, the stream stays open: a message whose write fails for that
 * reason is tried again (in order, with backoff) until the database answers or the stream ends, so a
 * worker that finished a task during an outage does not lose its outcome.
 *
 * Batches: a WorkerMessage.batch is handled item by item, exactly as if its messages had come one after
 * another. Replies queued together (the leases of one claim, the acks of finishes written together)
 * go out as one ServerMessage.batch to a worker whose hello accepts batches, within the budget of
 * @taskq/protocol (batching.ts); every other worker gets them one at a time.
 *
 * One worker cannot crowd out the others: once MAX_PENDING of its messages wait to be handled (a
 * batch, read whole, may take that past by its own size, at most MAX_BATCH_MESSAGES), or MAX_OUTBOX
 * replies wait for it to read them, the server stops reading its stream, and HTTP/2 flow control holds
 * the worker back. Its log steps and status values take at most MAX_UPDATE_WRITES database
 * connections at once.
 */
import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { retryWhileUnreachable } from "../engine/index.js";
import type { Engine, CancelReason as EngineCancelReason, LeasedTask, Outcome, WorkerSession } from "../engine/index.js";
import { AsyncQueue } from "@taskq/protocol";
import { BATCH_LIMITS, MAX_BATCH_MESSAGES, bytesBound } from "@taskq/protocol";
import {
  CancelReason,
  CancelSchema,
  FinishRejectedSchema,
  HeartbeatAckSchema,
  RejectReason,
  ServerMessageSchema,
  UpdateRejectedSchema,
  encodedField,
  type EncodedField,
  type WorkerService,
  type Finish,
  type WorkerMessage,
} from "@taskq/protocol";
import { STATUS_TO_PB } from "./convert.js";
import { toConnectError } from "./errors.js";
import { SERVER_MESSAGE_FIELD, batchMessageOf, finishAckBytes, leaseBytes, serverMessageOf } from "./server-wire.js";
import {
  NOT_HELD,
  NOT_HELD_OR_INTERRUPTED,
  fence,
  helloFromPb,
  invalid,
  jsonFromPb,
  limit,
  logStepProblem,
  outcomeFromPb,
  refusedOutcome,
  snoozeDelayMs,
  statusKeyProblem,
  statusValueSizeProblem,
  type Rejection,
} from "./worker-messages.js";
import * as v from "./validate.js";

/** Messages of one stream waiting to be handled before the server stops reading more. */
const MAX_PENDING = 1_000;
/** Replies to one worker waiting for it to read them before the server stops reading its messages. */
const MAX_OUTBOX = 1_000;
/** Log steps and status values of one worker written at once. */
const MAX_UPDATE_WRITES = 4;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;

const CANCEL_REASON: Record<EngineCancelReason, CancelReason> = {
  interrupted: CancelReason.INTERRUPTED,
  timed_out: CancelReason.TIMED_OUT,
  shutdown: CancelReason.SHUTDOWN,
};

/** A reply waiting to be sent, with an upper bound of its encoded size (see batching.ts). */
/** A reply waiting to go out: its bytes (server-wire.ts), and an upper bound of their size for batching. */
interface Outgoing {
  reply: EncodedField;
  bytes: number;
}
type Outbox = AsyncQueue<Outgoing>;

export function workerService(engine: Engine, log: Logger): ServiceImpl<typeof WorkerService> {
  return {
    async *connect(requests, ctx) {
      const incoming = requests[Symbol.asyncIterator]();
      const first = await withinMs(incoming.next(), engine.silenceLimitMs);
      if (first === "timeout") {
        throw new ConnectError(`no hello within ${engine.silenceLimitMs / 1000} s of opening the stream`, Code.DeadlineExceeded);
      }
      if (first.done) return;
      if (first.value.message.case !== "hello") {
        throw new ConnectError("the first message of a worker stream must be hello", Code.FailedPrecondition);
      }
      const hello = helloFromPb(first.value.message.value);
      const outbox: Outbox = new AsyncQueue();
      // Since when a reply has waited for the worker to read it (the response is blocked writing).
      let writingSince: number | null = null;
      // When the engine gives up on the worker, or the stream goes away, stop waiting for its messages.
      let closeReason = "worker disconnected";
      let hangUp!: () => void;
      const hungUp = new Promise<IteratorResult<WorkerMessage>>((resolve) => (hangUp = () => resolve({ done: true, value: undefined })));
      const endStream = (reason: string, code: Code, how: "now" | "after_queued" = "now") => {
        closeReason = reason;
        if (how === "now") outbox.fail(new ConnectError(reason, code));
        else outbox.close(new ConnectError(reason, code));
        hangUp();
      };
      let session: WorkerSession;
      try {
        session = await engine.openSession(hello, {
          lease: (task) => outbox.push(leaseToPb(task)),
          cancel: (taskId, leaseToken, reason) =>
            outbox.push(reply(SERVER_MESSAGE_FIELD.cancel, CancelSchema, { taskId, leaseToken, reason: CANCEL_REASON[reason] })),
          end: (reason, how) => endStream(reason, Code.Unavailable, how),
          stalledForMs: () => (writingSince === null ? 0 : performance.now() - writingSince),
        });
      } catch (err) {
        throw toConnectError(err, log);
      }
      const slog = log.child({ session: session.id, worker: hello.workerName });
      slog.info({ types: [...hello.taskTypes.keys()] }, "worker connected");
      // The session ends when the stream does, whatever the response is doing: a response stuck writing
      // to a worker that reads nothing (its event loop blocked, the connection half-open) may never return.
      // Only a worker that closed its side itself surely knows the session is over; after any other end
      // its leases wait for the deadline it was told (see WorkerSession.close).
      let workerClosed = false;
      const ended = async () => {
        if (session.isClosed) return;
        await session.close(closeReason, { afterPromises: !workerClosed });
        slog.info({ reason: closeReason }, "worker session ended");
      };
      const onAbort = () => {
        hangUp();
        outbox.close();
      };
      // The stream may have ended while the session was opening: then the listener would never fire.
      if (ctx.signal.aborted) onAbort();
      else ctx.signal.addEventListener("abort", onAbort, { once: true });
      const fromWorker = async () => {
        const r = await incoming.next();
        workerClosed = r.done === true;
        return r;
      };
      const stream = { credited: false };
      // Half the silence limit: a worker that also says nothing else hears this reason, not silence's.
      const creditsWithinMs = engine.silenceLimitMs / 2;
      const noCredits = setTimeout(() => {
        if (stream.credited) return;
        const s = creditsWithinMs / 1000;
        endStream(`no credits within ${s} s of the welcome: a stream starts with none; send Credits to receive leases`, Code.FailedPrecondition);
      }, creditsWithinMs);
      const reading = readMessages({ next: () => Promise.race([fromWorker(), hungUp]) }, session, outbox, stream, slog).finally(() => {
        clearTimeout(noCredits);
        return ended();
      });
      // Replies queued together go as one batch to a worker that understands batches.
      const limits = first.value.message.value.acceptsBatches ? BATCH_LIMITS : { count: 1, bytes: 0 };
      const yielded = () => (writingSince = null);
      try {
        writingSince = performance.now();
        yield create(ServerMessageSchema, {
          message: {
            case: "welcome",
            value: {
              sessionId: session.id,
              serverId: engine.replicaId,
              heartbeatInterval: durationFromMs(engine.heartbeatIntervalMs),
              acceptsBatches: true,
              leaseValidity: durationFromMs(session.promiseValidity()),
              silenceLimit: durationFromMs(engine.silenceLimitMs),
            },
          },
        });
        yielded();
        for await (const batch of outbox.batches((o) => o.bytes, limits)) {
          if (ctx.signal.aborted) break;
          writingSince = performance.now();
          yield batch.length === 1 ? serverMessageOf(batch[0].reply) : batchMessageOf(batch.map((o) => o.reply));
          yielded();
        }
      } finally {
        outbox.close();
        hangUp();
        await reading.catch(() => {});
      }
    },
  };
}

/** Reads the worker's messages until its stream ends, then closes the outbox (ending the response). */
async function readMessages(
  incoming: { next(): Promise<IteratorResult<WorkerMessage>> },
  session: WorkerSession,
  outbox: Outbox,
  stream: { credited: boolean },
  log: Logger,
): Promise<void> {
  const perTask = new Map<string, Promise<void>>();
  const writes = new Semaphore(MAX_UPDATE_WRITES);
  let pending = 0;
  let roomFreed: (() => void) | null = null;
  const inOrder = (taskId: string, work: () => Promise<void>) => {
    pending++;
    const run = (perTask.get(taskId) ?? Promise.resolve())
      .then(() => whileDatabaseDown(work, () => session.isClosed, log))
      .catch((err: unknown) => {
        log.error({ err, task: taskId }, "handling a worker message failed");
        outbox.fail(toConnectError(err, log));
      });
    perTask.set(taskId, run);
    void run.then(() => {
      if (perTask.get(taskId) === run) perTask.delete(taskId);
      pending--;
      roomFreed?.();
    });
  };
  const handle = (m: WorkerMessage["message"], inBatch: boolean): void => {
    switch (m.case) {
      case "hello":
        throw new ConnectError("hello may be sent only once", Code.FailedPrecondition);
      case "batch":
        if (inBatch) throw new ConnectError("batch: a batch may not hold a batch", Code.InvalidArgument);
        if (m.value.messages.length > MAX_BATCH_MESSAGES) {
          throw new ConnectError(`batch: more than ${MAX_BATCH_MESSAGES} messages`, Code.InvalidArgument);
        }
        for (const item of m.value.messages) handle(item.message, true);
        break;
      case "credits":
        if (m.value.count > 0) stream.credited = true;
        session.addCredits(m.value.count);
        break;
      case "heartbeat":
        // Answered only while the database confirms the session: an ack promises the leases' validity.
        if (m.value.seq > 0n && session.validForMs > 0) {
          const ack = { seq: m.value.seq, leaseValidity: durationFromMs(session.promiseValidity()) };
          outbox.push(reply(SERVER_MESSAGE_FIELD.heartbeatAck, HeartbeatAckSchema, ack));
        }
        break;
      case "logStep": {
        const { taskId, leaseToken } = m.value;
        const text = m.value.message;
        inOrder(taskId, async () => {
          const fenced = fence(taskId, leaseToken);
          if ("problem" in fenced) return void outbox.push(updateRejected(taskId, leaseToken, fenced.problem));
          const problem = logStepProblem(text);
          if (problem) return void outbox.push(updateRejected(taskId, leaseToken, problem));
          const ok = await writes.run(() => session.log(taskId, fenced.token, text));
          if (!ok) outbox.push(updateRejected(taskId, leaseToken, NOT_HELD));
        });
        break;
      }
      case "statusValue": {
        const { taskId, leaseToken, key, value } = m.value;
        inOrder(taskId, async () => {
          const fenced = fence(taskId, leaseToken);
          if ("problem" in fenced) return void outbox.push(updateRejected(taskId, leaseToken, fenced.problem));
          const json = jsonFromPb(value);
          const problem = statusKeyProblem(key) ?? json.problem ?? statusValueSizeProblem(json.text);
          if (problem) return void outbox.push(updateRejected(taskId, leaseToken, problem));
          const maxKeys = v.LIMITS.statusValueKeys;
          const done = await writes.run(() => session.setStatusValue(taskId, fenced.token, key, json.value ?? null, maxKeys));
          if (done === "full") outbox.push(updateRejected(taskId, leaseToken, limit(`status values: a task may have at most ${maxKeys} keys`)));
          else if (done === "not_held") outbox.push(updateRejected(taskId, leaseToken, NOT_HELD));
        });
        break;
      }
      case "finish": {
        const finish = m.value;
        inOrder(finish.taskId, () => handleFinish(finish, session, outbox));
        break;
      }
      case "extendDeadline": {
        const { taskId, leaseToken, timeout } = m.value;
        inOrder(taskId, async () => {
          const fenced = fence(taskId, leaseToken);
          if ("problem" in fenced) return void outbox.push(updateRejected(taskId, leaseToken, fenced.problem));
          let ms: number | undefined;
          try {
            ms = v.duration("timeout", timeout, { min: 1 });
          } catch (err) {
            return void outbox.push(updateRejected(taskId, leaseToken, invalid((err as Error).message)));
          }
          if (ms === undefined) return void outbox.push(updateRejected(taskId, leaseToken, invalid("timeout: required")));
          const extended = await writes.run(() => session.extendDeadline(taskId, fenced.token, ms));
          if (!extended) outbox.push(updateRejected(taskId, leaseToken, NOT_HELD_OR_INTERRUPTED));
        });
        break;
      }
      default:
        throw new ConnectError("empty or unknown worker message", Code.InvalidArgument);
    }
  };
  try {
    for (let r = await incoming.next(); !r.done; r = await incoming.next()) {
      while (pending >= MAX_PENDING) await new Promise<void>((resolve) => (roomFreed = resolve));
      roomFreed = null;
      await outbox.whenShorterThan(MAX_OUTBOX);
      session.touch();
      handle(r.value.message, false);
    }
    await Promise.all(perTask.values());
    outbox.close();
  } catch (err) {
    // Messages already received still count (a finish sent just before the stream broke is recorded)
    // before the session closes and releases what it holds.
    await Promise.allSettled(perTask.values());
    outbox.fail(toConnectError(err, log));
  }
}

/** What `promise` resolves to, or "timeout" when that takes longer than `ms`. */
async function withinMs<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `work`; while it fails because the database cannot be reached, tries again with backoff until `gone()`. */
function whileDatabaseDown(work: () => Promise<void>, gone: () => boolean, log: Logger): Promise<void> {
  return retryWhileUnreachable(work, {
    minMs: RETRY_MIN_MS,
    maxMs: RETRY_MAX_MS,
    giveUp: gone,
    onRetry: (err, retryInMs) => log.warn({ err: err.message, retryInMs }, "database unreachable; will write the worker's message again"),
  });
}

async function handleFinish(f: Finish, session: WorkerSession, outbox: Outbox): Promise<void> {
  const { taskId, leaseToken } = f;
  const rejected = ({ reason, code }: Rejection) =>
    outbox.push(reply(SERVER_MESSAGE_FIELD.finishRejected, FinishRejectedSchema, { taskId, leaseToken, reason, code }, reason.length));
  const fenced = fence(taskId, leaseToken);
  if ("problem" in fenced) return void rejected(fenced.problem);
  const { token } = fenced;
  let recorded: { outcome: Outcome; error: string };
  if (f.outcome.case === "decline" || f.outcome.case === "snooze") {
    const delayMs = f.outcome.case === "snooze" ? snoozeDelayMs(f.outcome.value.delay) : 0;
    if (typeof delayMs === "number") {
      const given = await session.giveBack(taskId, token, f.outcome.case === "decline" ? "declined" : "snoozed", delayMs);
      if (!given.accepted) return void rejected({ reason: given.reason, code: RejectReason.NOT_HELD });
      return void outbox.push({ reply: finishAckBytes(taskId, leaseToken, STATUS_TO_PB[given.status], ""), bytes: bytesBound(0, 0) });
    }
    // A snooze the server cannot take is recorded as a failed attempt, as any malformed finish is.
    recorded = refusedOutcome(delayMs.problem);
  } else {
    recorded = outcomeFromPb(f);
  }
  const { outcome, error } = recorded;
  const result = await session.finish(taskId, token, outcome);
  if (!result.accepted) return void rejected({ reason: result.reason, code: RejectReason.NOT_HELD });
  outbox.push({ reply: finishAckBytes(taskId, leaseToken, STATUS_TO_PB[result.status], error), bytes: bytesBound(0, error.length) });
}

/** At most `limit` of the functions given to run() are running at once; the rest wait their turn. */
class Semaphore {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

function leaseToPb(t: LeasedTask): Outgoing {
  const traceLength = (t.trace?.parent.length ?? 0) + (t.trace?.state?.length ?? 0);
  const textLength = t.type.length + t.queue.length + t.title.length + (t.idempotencyKey?.length ?? 0) + traceLength;
  return { reply: leaseBytes(t), bytes: bytesBound(t.paramsJsonLength, textLength) };
}

const updateRejected = (taskId: string, leaseToken: string, { reason, code }: Rejection) =>
  reply(SERVER_MESSAGE_FIELD.updateRejected, UpdateRejectedSchema, { taskId, leaseToken, reason, code }, reason.length);

/** A reply (through the generated code) whose strings, besides task ids and lease tokens, add up to `textLength` characters. */
function reply<Desc extends DescMessage>(field: number, schema: Desc, value: MessageInitShape<Desc>, textLength = 0): Outgoing {
  return { reply: encodedField(field, schema, value), bytes: bytesBound(0, textLength) };
}