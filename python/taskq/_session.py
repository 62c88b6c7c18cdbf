"""
One connection attempt of a worker: a WorkerService.Connect stream from hello to its end
(docs/worker-protocol.md). Everything here runs on the worker's event loop thread.

States (`mode`):
  connecting  hello and the initial credits are queued; the call waits for the server (wait_for_ready)
  open        welcome received; leases arrive and run; finishes, log steps and status values go out
  draining    drain() called: no more credits are granted. Credits cannot be taken back, so leases may
              still come: each is declined (given back unrun, its attempt not counted). The Worker
              half-closes the stream once no task runs here and every finish sent has its answer (a
              lease the server sent before answering arrives before the answer, and is declined too)
  lapsed      the leases' deadline passed (below): every task is aborted and what it reports dropped;
              leases that still come, and aborted ones whose handler had not started, are declined,
              and the stream ends once what is queued has been written (at most LAPSE_FLUSH_S), so that
              those declines reach a server that is still there
  ended       the stream ended (server gone, network, drain done, leases lapsed); the Worker aborts
              the tasks still running on it, because the server returns their leases to the queue,
              and drops what they report afterwards

Lease validity (§10): every heartbeat carries a seq, and the server's HeartbeatAck says how long after
that heartbeat was sent the session's leases stay valid (the welcome says the same of the hello). The
deadline counts from when the message was handed to the stream, on this process's monotonic clock,
so it is never later than the server's. When it passes with no newer ack, the session lapses and the
worker connects again. A lease that arrives after the deadline is never started: it may already run
elsewhere. It is declined, which the server refuses if the lease did go elsewhere.

Answers: the server answers every finish once, with FinishAck or FinishRejected, and refuses a log step
or status value with UpdateRejected. Each goes to the operator (hooks.note) with its code, at warning
level: a rejection, and an ack whose error says the server recorded the attempt as failed instead of
as sent. A declined lease, and a NOT_HELD refusal the worker expected (the server had ended the attempt
first: a timeout, a shutdown, a lost lease), are noted at info.

Each lease is run by the Worker; a finished task's credit goes back once its finish is queued, and the
credits freed in one turn of the loop go as one message; only an open session returns credits. What
the session sends goes through its Outbox (_outbox.py), which batches it once the welcome says the
server takes batches; the hello says this worker takes them too.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import grpc
import grpc.aio

from ._gen import worker_pb2
from ._outbox import Outbox, bytes_bound
from .errors import CancelReason, TaskqError
from .types import duration, seconds, status_name

# How often to send a heartbeat when the welcome does not say (the TypeScript SDK's DEFAULT_HEARTBEAT_INTERVAL_MS).
DEFAULT_HEARTBEAT_S = 10.0
# How long a lapsed session waits for what it queued (declines) to be written before it ends the stream.
LAPSE_FLUSH_S = 1.0

_CANCEL_REASONS: dict[int, CancelReason] = {
    worker_pb2.CANCEL_REASON_INTERRUPTED: "interrupted",
    worker_pb2.CANCEL_REASON_TIMED_OUT: "timed_out",
    worker_pb2.CANCEL_REASON_SHUTDOWN: "shutdown",
}


def reject_code(code: int) -> str:
    """A RejectReason as its short name ("NOT_HELD"); UNSPECIFIED from a server older than the codes."""
    try:
        return str(worker_pb2.RejectReason.Name(code)).removeprefix("REJECT_REASON_")
    except ValueError:
        return str(code)


@dataclass(frozen=True)
class TaskTypeInfo:
    name: str
    timeout: float | None = None
    schedule: str | None = None
    time_zone: str | None = None


@dataclass(frozen=True)
class HelloInfo:
    worker_name: str
    concurrency: int
    task_types: list[TaskTypeInfo]
    queues: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _SentFinish:
    """A finish awaiting its answer."""

    declined: bool
    # The server had ended the attempt (a timeout, a shutdown, a lost lease): a NOT_HELD refusal is expected.
    expect_not_held: bool


class SessionHooks(Protocol):
    def run(self, lease: worker_pb2.Lease, session: StreamSession) -> Coroutine[Any, Any, None]:
        """Runs one lease; completes once its finish has been queued."""

    def cancel(self, lease_token: str, reason: CancelReason) -> None:
        """The server canceled a lease of this session."""

    def lapsed(self, session: StreamSession) -> None:
        """The session's leases lapsed: abort every task it runs, now."""

    def note(self, event: str, level: int = logging.INFO, **detail: Any) -> None:
        """Something worth telling the operator (answers to finishes, rejections), at a logging level."""

    def opened(self, session_id: str) -> None:
        """The server welcomed the session."""


class StreamSession:
    def __init__(self, channel: grpc.aio.Channel, connect: Any, metadata: Any, hello: HelloInfo, hooks: SessionHooks) -> None:
        self.mode: Literal["connecting", "open", "draining", "lapsed", "ended"] = "connecting"
        self.welcomed = False
        self._channel = channel
        self._connect = connect
        self._metadata = metadata
        self._hello = hello
        self._hooks = hooks
        self._loop = asyncio.get_running_loop()
        self._outbox = Outbox(self._writing)
        self._running: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._credits_to_return = 0
        # The finishes sent that await the server's answer, by lease token.
        self._unanswered: dict[str, _SentFinish] = {}
        self._answered = asyncio.Event()
        self._answered.set()
        self._heartbeat_seq = 0
        # When the hello (seq 0) and each unanswered heartbeat were handed to the stream (loop.time()).
        self._sent_at: dict[int, float] = {}
        self._valid_until: float | None = None
        self._lapse_timer: asyncio.TimerHandle | None = None
        self._heartbeats: asyncio.Task[None] | None = None
        self._ending: asyncio.Task[None] | None = None
        self._call: Any = None
        # Why this side ended the stream (the leases lapsed, the worker gave up waiting), when it did.
        self._ended_by: TaskqError | None = None

    @property
    def running_count(self) -> int:
        return len(self._running)

    def send_finish(self, finish: worker_pb2.Finish, size: int = bytes_bound(0, 0), *, expect_not_held: bool = False) -> None:
        """Queues a finish, to await its answer; `expect_not_held`: the server has ended the attempt already."""
        declined = finish.WhichOneof("outcome") == "decline"
        # Once lapsed, only declines go out: a server that still holds the lease would record another outcome of
        # an aborted attempt as sent (a retry counts the attempt); a lease given back does not count it.
        if self._outbox.closed or (self.mode == "lapsed" and not declined):
            return
        self._unanswered[finish.lease_token] = _SentFinish(declined, expect_not_held)
        self._answered.clear()
        self._outbox.put(worker_pb2.WorkerMessage(finish=finish), size)

    def send(self, message: worker_pb2.WorkerMessage, size: int = bytes_bound(0, 0)) -> None:
        """Queues a message; dropped once the stream has ended, half-closed or lapsed. `size` bounds its encoded size."""
        if not self._outbox.closed and self.mode != "lapsed":
            self._outbox.put(message, size)

    async def run(self) -> None:
        """Runs the stream to its end: returns when it ended with OK, raises TaskqError otherwise."""
        self._queue_hello()
        writer: asyncio.Task[None] | None = None
        try:
            # The hello's send time anchors the first lease deadline: start counting once a connection is there.
            await self._channel.channel_ready()
            self._call = call = self._connect(metadata=self._metadata, wait_for_ready=True)
            writer = self._loop.create_task(self._write(call))
            async for message in call:
                self._receive(message, in_batch=False)
            if self._ended_by is not None:
                raise self._ended_by
        except asyncio.CancelledError:
            if self._ended_by is not None:
                raise self._ended_by from None
            raise
        except grpc.aio.AioRpcError as err:
            raise (self._ended_by or TaskqError(err.code(), err.details() or "the stream ended")) from err
        finally:
            self.mode = "ended"
            self._outbox.discard()
            self._answered.set()  # no answer can come now
            for task in (writer, self._heartbeats, self._ending):
                if task is not None:
                    task.cancel()
            if self._lapse_timer is not None:
                self._lapse_timer.cancel()
            if self._call is not None:
                self._call.cancel()

    def drain(self) -> None:
        """Grant no more credits, and decline the leases that still come."""
        if self.mode in ("connecting", "open"):
            self.mode = "draining"

    def half_close(self) -> None:
        """Send what is queued, then end this side of the stream; later messages are dropped."""
        self._outbox.close()

    def end(self, error: TaskqError) -> None:
        """Ends the stream from this side: run() raises `error`."""
        if self._ended_by is None:
            self._ended_by = error
        if self._call is not None:
            self._call.cancel()

    async def wait_idle(self) -> None:
        """Returns once no task runs on this session."""
        await self._idle.wait()

    async def wait_answered(self) -> None:
        """Returns once every finish sent has its answer, or the stream has ended."""
        await self._answered.wait()

    def _queue_hello(self) -> None:
        h = self._hello
        types = []
        for t in h.task_types:
            declared = worker_pb2.TaskType(name=t.name, schedule=t.schedule or "", time_zone=t.time_zone or "")
            if t.timeout is not None:
                declared.timeout.CopyFrom(duration(t.timeout))
            types.append(declared)
        hello = worker_pb2.Hello(
            worker_name=h.worker_name, task_types=types, queues=h.queues, concurrency=h.concurrency, accepts_batches=True
        )
        self.send(worker_pb2.WorkerMessage(hello=hello))
        self.send(worker_pb2.WorkerMessage(credits=worker_pb2.Credits(count=h.concurrency)))

    async def _write(self, call: Any) -> None:
        try:
            await self._outbox.write_to(call)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the call ended under the writer; unless the reader saw that, end it here
            if not call.done():
                self.end(TaskqError(grpc.StatusCode.INTERNAL, f"could not send to the server: {err}"))

    def _writing(self, messages: list[worker_pb2.WorkerMessage]) -> None:
        """Notes when the hello and each heartbeat with a seq are handed to the stream: their acks' deadlines count from then."""
        now = self._loop.time()
        for message in messages:
            kind = message.WhichOneof("message")
            if kind == "hello":
                self._sent_at[0] = now
            elif kind == "heartbeat" and message.heartbeat.seq:
                self._sent_at[message.heartbeat.seq] = now

    def _receive(self, message: worker_pb2.ServerMessage, in_batch: bool) -> None:
        kind = message.WhichOneof("message")
        if kind == "welcome":
            w = message.welcome
            every = seconds(w.heartbeat_interval) if w.HasField("heartbeat_interval") else DEFAULT_HEARTBEAT_S
            self._heartbeats = self._loop.create_task(self._beat(max(every, 0.05)))
            self._outbox.batching = w.accepts_batches
            if w.HasField("lease_validity"):
                self._extend(0, seconds(w.lease_validity))
            self.welcomed = True
            if self.mode == "connecting":
                self.mode = "open"
            self._hooks.opened(w.session_id)
        elif kind == "heartbeat_ack":
            ack = message.heartbeat_ack
            if ack.HasField("lease_validity"):
                self._extend(ack.seq, seconds(ack.lease_validity))
        elif kind == "batch":
            if not in_batch:  # a nested batch is not the protocol's: ignore it, as the TypeScript SDK does
                for inner in message.batch.messages:
                    self._receive(inner, in_batch=True)
        elif kind == "lease":
            if self._lapse_if_past() and self.mode == "open":
                self._start(message.lease)
            else:
                self._decline(message.lease)
        elif kind == "cancel":
            self._hooks.cancel(message.cancel.lease_token, _CANCEL_REASONS.get(message.cancel.reason, "interrupted"))
        elif kind == "finish_ack":
            self._acked(message.finish_ack)
        elif kind == "finish_rejected":
            self._refused(message.finish_rejected)
        elif kind == "update_rejected":
            r = message.update_rejected
            detail = {"task": r.task_id, "code": reject_code(r.code), "reason": r.reason}
            self._hooks.note("update rejected", logging.WARNING, **detail)
        # Kinds newer than this SDK: nothing to do.

    def _acked(self, ack: worker_pb2.FinishAck) -> None:
        sent = self._answer(ack.lease_token)
        status = status_name(ack.status)
        if ack.error:
            # The outcome could not be recorded as sent (malformed, too large): the attempt counted as failed.
            self._hooks.note("finish recorded as failed", logging.WARNING, task=ack.task_id, status=status, error=ack.error)
        elif sent is not None and sent.declined:
            self._hooks.note("lease declined", task=ack.task_id, status=status)

    def _refused(self, r: worker_pb2.FinishRejected) -> None:
        sent = self._answer(r.lease_token)
        expected = sent is not None and sent.expect_not_held and r.code == worker_pb2.REJECT_REASON_NOT_HELD
        level = logging.INFO if expected else logging.WARNING
        self._hooks.note("finish rejected", level, task=r.task_id, code=reject_code(r.code), reason=r.reason)

    def _answer(self, lease_token: str) -> _SentFinish | None:
        sent = self._unanswered.pop(lease_token, None)
        if not self._unanswered:
            self._answered.set()
        return sent

    def _decline(self, lease: worker_pb2.Lease) -> None:
        """
        Gives a lease back unrun (the worker is stopping, or the lease came after the deadline): the task
        is due again at once and this attempt does not count. Returns no credit.
        """
        finish = worker_pb2.Finish(task_id=lease.task_id, lease_token=lease.lease_token, decline=worker_pb2.Decline())
        self.send_finish(finish, expect_not_held=self.mode == "lapsed")

    def _extend(self, seq: int, valid_for: float) -> None:
        """The server promised the leases until `valid_for` seconds after heartbeat `seq` (0: the hello) was sent."""
        sent_at = self._sent_at.get(seq)
        if sent_at is None:
            return
        for s in [s for s in self._sent_at if s <= seq]:
            del self._sent_at[s]
        until = sent_at + valid_for
        if self._valid_until is not None and until <= self._valid_until:
            return
        self._valid_until = until
        if self._lapse_timer is not None:
            self._lapse_timer.cancel()
        # One more turn of the loop before judging: an ack already read from the network is handled first.
        self._lapse_timer = self._loop.call_at(until + 0.001, lambda: self._loop.call_soon(self._lapse_if_past))

    def _lapse_if_past(self) -> bool:
        """True while the leases are valid; once their deadline has passed, the session lapses (and stays lapsed)."""
        if self.mode in ("lapsed", "ended"):
            return False
        if self._valid_until is None or self._loop.time() < self._valid_until:
            return True
        late = round((self._loop.time() - self._valid_until) * 1000)
        self.mode = "lapsed"
        self._hooks.lapsed(self)
        message = f"the session's leases lapsed {late} ms ago: no heartbeat ack from the server in time"
        self._ending = self._loop.create_task(self._end_once_written(TaskqError(grpc.StatusCode.ABORTED, message)))
        return False

    async def _end_once_written(self, error: TaskqError) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.written.wait(), LAPSE_FLUSH_S)
        self.end(error)

    async def _beat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if not self._lapse_if_past():
                return
            if self._valid_until is None:  # a server that promises no validity answers nothing: ask nothing
                self.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat()))
                continue
            self._heartbeat_seq += 1
            self.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat(seq=self._heartbeat_seq)))

    def _start(self, lease: worker_pb2.Lease) -> None:
        job = self._loop.create_task(self._hooks.run(lease, self))
        self._running.add(job)
        self._idle.clear()
        job.add_done_callback(self._finished)

    def _finished(self, job: asyncio.Task[None]) -> None:
        self._running.discard(job)
        if not job.cancelled() and job.exception() is not None:
            self._hooks.note("task runner failed", error=repr(job.exception()))
        if self.mode == "open":
            self._return_credit()
        if not self._running:
            self._idle.set()

    def _return_credit(self) -> None:
        self._credits_to_return += 1
        if self._credits_to_return == 1:
            self._loop.call_soon(self._flush_credits)

    def _flush_credits(self) -> None:
        count, self._credits_to_return = self._credits_to_return, 0
        if self.mode == "open" and count:
            self.send(worker_pb2.WorkerMessage(credits=worker_pb2.Credits(count=count)))
