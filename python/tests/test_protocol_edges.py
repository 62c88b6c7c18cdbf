"""
The worker against a stand-in server (fake_server.py), for what the real one does not do on demand: a
refusal after a transient failure, a stream ended with a refusing code after a welcome, a cancel in
the same batch as its lease, answers to finishes that carry an error or a rejection code, and the
exact finish a handler cut off by a cancel sends.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fake_server import FakeWorkerService, Script, messages, refuse, welcome, welcome_then_end
from helpers import wait_until

import taskq
from taskq import RetryableError, TaskContext
from taskq._gen import task_pb2, worker_pb2
from taskq._reconnect import REFUSALS

Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def fake() -> Iterator[Callable[[list[Script]], FakeWorkerService]]:
    made: list[FakeWorkerService] = []

    def make(scripts: list[Script]) -> FakeWorkerService:
        made.append(FakeWorkerService(scripts))
        return made[-1]

    yield make
    for server in made:
        server.stop()


def fake_worker(url: str, tmp_path: Path, events: Events) -> taskq.Worker:
    worker = taskq.Worker(url, storage_dir=tmp_path, reconnect=(0.01, 0.05), on_event=lambda e, d: events.append((e, d)))

    @worker.task("py.fake")
    def quick(ctx: TaskContext) -> object:
        ctx.log("step")
        return {"ok": True}

    @worker.task("py.fake.wait")
    def wait(ctx: TaskContext) -> object:
        ctx.log("waiting")
        ctx.sleep(30)
        return "woke"

    @worker.task("py.fake.retry-later")
    def retry_later(ctx: TaskContext) -> object:
        ctx.log("waiting")
        ctx.cancelled.wait(30)
        raise RetryableError("try again in an hour", delay=3600)

    @worker.task("py.fake.snooze-later")
    def snooze_later(ctx: TaskContext) -> object:
        ctx.log("waiting")
        ctx.cancelled.wait(30)
        ctx.snooze(3600)

    return worker


def test_a_refusal_after_a_transient_failure_still_ends_the_worker(fake: Callable[..., FakeWorkerService], tmp_path: Path) -> None:
    server = fake([refuse(grpc.StatusCode.UNAVAILABLE), refuse(grpc.StatusCode.UNAUTHENTICATED)])
    events: Events = []
    worker = fake_worker(server.url, tmp_path, events)
    with pytest.raises(taskq.WorkerRefusedError) as raised:
        worker.start(timeout=20)
    assert raised.value.code == taskq.StatusCode.UNAUTHENTICATED
    assert raised.value.message == "the server refused the worker: refused: UNAUTHENTICATED"
    assert [e for e, _ in events] == ["disconnected", "gave up"], "UNAVAILABLE was retried, UNAUTHENTICATED was not"
    assert server.streams == 2


@pytest.mark.parametrize("code", sorted(REFUSALS, key=lambda c: str(c.name)), ids=lambda c: str(c.name))
def test_once_welcomed_the_worker_reconnects_whatever_ends_its_stream(
    fake: Callable[..., FakeWorkerService], tmp_path: Path, code: grpc.StatusCode
) -> None:
    server = fake([welcome_then_end(code)])
    events: Events = []
    worker = fake_worker(server.url, tmp_path, events)
    try:
        worker.start(timeout=20)
        wait_until("a second welcome", lambda: sum(1 for e, _ in events if e == "connected") == 2)
        assert ("disconnected", {"code": code.name, "error": f"ended after the welcome: {code.name}"}) in events
        assert "gave up" not in [e for e, _ in events]
    finally:
        worker.stop(grace=1)


def lease(task_id: str, type: str) -> worker_pb2.ServerMessage:
    return worker_pb2.ServerMessage(
        lease=worker_pb2.Lease(task_id=task_id, lease_token=f"token-{task_id}", type=type, queue="default", attempt=1, max_attempts=3)
    )


def cancel(task_id: str, reason: int) -> worker_pb2.ServerMessage:
    return worker_pb2.ServerMessage(cancel=worker_pb2.Cancel(task_id=task_id, lease_token=f"token-{task_id}", reason=reason))


def ack(f: worker_pb2.Finish, status: int, error: str = "") -> worker_pb2.ServerMessage:
    a = worker_pb2.FinishAck(task_id=f.task_id, lease_token=f.lease_token, status=status, error=error)
    return worker_pb2.ServerMessage(finish_ack=a)


def rejected(f: worker_pb2.Finish, code: int, reason: str) -> worker_pb2.ServerMessage:
    r = worker_pb2.FinishRejected(task_id=f.task_id, lease_token=f.lease_token, reason=reason, code=code)
    return worker_pb2.ServerMessage(finish_rejected=r)


def answering(finishes: list[tuple[str, str]]) -> Script:
    """
    Leases four tasks one after another, answering each finish in its own way: 1 recorded as failed
    instead (FinishAck.error), 2 rejected INVALID, 3 interrupted in the batch that leases it, 4 timed out
    and its finish rejected NOT_HELD. Task 1's log step is rejected LIMIT.
    """

    def script(requests: Iterator[worker_pb2.WorkerMessage], context: Any) -> Iterator[worker_pb2.ServerMessage]:
        from_worker = messages(requests)
        next(from_worker)  # the hello
        yield welcome()
        yield lease("1", "py.fake")
        for m in from_worker:
            kind = m.WhichOneof("message")
            if kind == "log_step" and m.log_step.task_id == "1":
                code = worker_pb2.REJECT_REASON_LIMIT
                r = worker_pb2.UpdateRejected(task_id="1", lease_token="token-1", reason="message: too long", code=code)
                yield worker_pb2.ServerMessage(update_rejected=r)
            elif kind == "log_step" and m.log_step.task_id == "4":
                yield cancel("4", worker_pb2.CANCEL_REASON_TIMED_OUT)
            elif kind == "finish":
                f = m.finish
                finishes.append((f.task_id, str(f.WhichOneof("outcome"))))
                if f.task_id == "1":
                    yield ack(f, task_pb2.TASK_STATUS_PENDING, "the worker's finish was refused: result: not JSON")
                    yield lease("2", "py.fake")
                elif f.task_id == "2":
                    yield rejected(f, worker_pb2.REJECT_REASON_INVALID, "lease_token: not a UUID")
                    both = [lease("3", "py.fake.wait"), cancel("3", worker_pb2.CANCEL_REASON_INTERRUPTED)]
                    yield worker_pb2.ServerMessage(batch=worker_pb2.ServerBatch(messages=both))
                elif f.task_id == "3":
                    yield ack(f, task_pb2.TASK_STATUS_CANCELED)
                    yield lease("4", "py.fake.wait")
                else:
                    yield rejected(f, worker_pb2.REJECT_REASON_NOT_HELD, "the lease is no longer valid")

    return script


def test_answers_to_finishes_reach_the_log_with_their_codes(
    fake: Callable[..., FakeWorkerService], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskq.worker")
    finishes: list[tuple[str, str]] = []
    server = fake([answering(finishes)])
    events: Events = []
    worker = fake_worker(server.url, tmp_path, events)
    try:
        worker.start(timeout=20)
        wait_until("the answer to the last finish", lambda: any(e == "finish rejected" and d["task"] == "4" for e, d in events))
    finally:
        worker.stop(grace=1)
    assert finishes == [("1", "success"), ("2", "success"), ("3", "decline"), ("4", "retry")]
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "taskq.worker"]
    expected = [
        (logging.WARNING, "update rejected {'task': '1', 'code': 'LIMIT', 'reason': 'message: too long'}"),
        (
            logging.WARNING,
            "finish recorded as failed {'task': '1', 'status': 'pending', 'error': \"the worker's finish was refused: result: not JSON\"}",
        ),
        (logging.WARNING, "finish rejected {'task': '2', 'code': 'INVALID', 'reason': 'lease_token: not a UUID'}"),
        # Cancelled before its handler could start: given back unrun.
        (logging.INFO, "lease declined {'task': '3', 'status': 'canceled'}"),
        # The server had ended the attempt (it timed out): a refusal to expect.
        (logging.INFO, "finish rejected {'task': '4', 'code': 'NOT_HELD', 'reason': 'the lease is no longer valid'}"),
    ]
    assert [entry for entry in logged if entry in expected] == expected


def cutting_off(finishes: list[worker_pb2.Finish]) -> Script:
    """Leases three tasks and cancels each once its handler has logged: 1 interrupted, 2 and 3 timed out."""

    def script(requests: Iterator[worker_pb2.WorkerMessage], context: Any) -> Iterator[worker_pb2.ServerMessage]:
        from_worker = messages(requests)
        next(from_worker)  # the hello
        yield welcome()
        yield lease("1", "py.fake.wait")
        yield lease("2", "py.fake.retry-later")
        yield lease("3", "py.fake.snooze-later")
        timed_out = worker_pb2.CANCEL_REASON_TIMED_OUT
        reasons = {"1": worker_pb2.CANCEL_REASON_INTERRUPTED, "2": timed_out, "3": timed_out}
        for m in from_worker:
            kind = m.WhichOneof("message")
            if kind == "log_step":
                yield cancel(m.log_step.task_id, reasons[m.log_step.task_id])
            elif kind == "finish":
                finishes.append(m.finish)
                yield ack(m.finish, task_pb2.TASK_STATUS_PENDING)

    return script


def test_a_handler_cut_off_by_a_cancel_gives_its_attempt_back_with_no_delay(
    fake: Callable[..., FakeWorkerService], tmp_path: Path
) -> None:
    finishes: list[worker_pb2.Finish] = []
    server = fake([cutting_off(finishes)])
    worker = fake_worker(server.url, tmp_path, [])
    try:
        worker.start(timeout=20)
        wait_until("the three finishes", lambda: len(finishes) == 3)
    finally:
        worker.stop(grace=1)
    by_task = {f.task_id: f for f in finishes}
    # Delay 0, not none (which would mean the task's retry delay); the cancel comes first, so a
    # RetryableError raised once cut off does not keep its own delay either, nor a snooze its own.
    for task_id, error in [("1", "the task was interrupted"), ("2", "try again in an hour"), ("3", "snoozed for 3600 s")]:
        f = by_task[task_id]
        assert (f.WhichOneof("outcome"), f.retry.error) == ("retry", error)
        assert f.retry.HasField("delay") and f.retry.delay.ToNanoseconds() == 0, f
