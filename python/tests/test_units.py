"""
Pieces that need no server: JSON conversion, URLs, reconnect pauses, the resumed watch's catch-up, the
names of attempt outcomes and wait reasons, the retry or snooze delay a handler's exception becomes, the
generated code's freshness.
"""
from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from conftest import PYTHON_DIR

import taskq
from taskq._connection import target_of
from taskq._gen import task_pb2, worker_pb2
from taskq._json import clean_text, from_value, to_value
from taskq._lease_runner import _set_error
from taskq._reconnect import ReconnectBackoff
from taskq._watch import catch_up
from taskq.errors import CancelReason
from taskq.types import LogStep, StatusEvent, StatusValueEvent, task_from_pb


def test_whole_numbers_come_back_as_int_within_2_to_the_53() -> None:
    value = to_value({"a": 7, "b": 7.0, "c": 2.5, "d": -(2**53), "e": [True, None, "x"], "f": {}}, "v")
    assert from_value(value) == {"a": 7, "b": 7, "c": 2.5, "d": -(2**53), "e": [True, None, "x"], "f": {}}
    assert type(from_value(to_value(7.0, "v"))) is int
    assert type(from_value(to_value(1e300, "v"))) is float, "beyond 2^53 a whole double stays a float"


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), 2**53 + 1, {1: "x"}, {"s": {1, 2}}, "nul\x00", "lone \udc80 surrogate", object()],
)
def test_what_json_cannot_carry_is_refused(bad: object) -> None:
    with pytest.raises(taskq.JsonValueError) as raised:
        to_value(bad, "v")
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, taskq.TaskqError)


def test_reconnect_pauses_are_jittered_within_their_step_and_never_over_the_cap() -> None:
    steps = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff = ReconnectBackoff(0.1, 5.0, random.Random(16).random)
    pauses = [backoff.next_pause() for _ in steps]
    assert all(step / 2 <= pause <= step for step, pause in zip(steps, pauses, strict=True)), pauses
    assert len({round(pause / step, 9) for step, pause in zip(steps, pauses, strict=True)}) == len(steps), "each pause drawn anew"
    # The bounds themselves: the lowest draw gives half the step, the highest all of it, and no more than the cap.
    lowest, highest = ReconnectBackoff(0.1, 5.0, lambda: 0.0), ReconnectBackoff(0.1, 5.0, lambda: 1.0)
    assert [round(lowest.next_pause(), 9) for _ in steps] == [step / 2 for step in steps]
    assert [round(highest.next_pause(), 9) for _ in steps] == steps
    backoff.reset()
    assert 0.05 <= backoff.next_pause() <= 0.1, "a welcome starts the steps again"


@pytest.mark.parametrize("reconnect", [(0.0, 5.0), (2.0, 1.0)])
def test_a_reconnect_setting_without_a_first_pause_or_under_its_cap_is_refused(reconnect: tuple[float, float]) -> None:
    with pytest.raises(taskq.TaskqError) as raised:
        taskq.Worker(reconnect=reconnect)
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT


def test_free_text_is_made_storable() -> None:
    assert clean_text("a\x00b\udc80c") == "a\ufffdb\ufffdc"
    assert clean_text("fine ✓") == "fine ✓"


def test_urls_become_grpc_targets() -> None:
    assert target_of("http://127.0.0.1:50051") == ("127.0.0.1:50051", False)
    assert target_of("https://taskq.internal") == ("taskq.internal:443", True)
    assert target_of("http://[::1]:7000/") == ("[::1]:7000", False)


def test_a_resumed_watch_reports_what_changed_while_it_was_away() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    step = LogStep(seq=3, time=t0, message="while away", attempt=1)
    known = _task(status="running", attempts=1, status_values={"progress": 10, "same": 1}, log=[])
    now = _task(status="completed", attempts=1, status_values={"progress": 100, "same": 1}, log=[step], result={"ok": True}, finished_at=t0)
    events = catch_up(known, now)
    assert [e.type for e in events] == ["log", "status_value", "status"]
    assert events[1] == StatusValueEvent("progress", 100)
    assert events[2] == StatusEvent("completed", 1, "", {"ok": True}, "", t0)


def test_attempt_outcomes_and_wait_reasons_become_names() -> None:
    t = task_pb2.Task(id="1", wait_reason=task_pb2.WAIT_REASON_QUEUE_LIMIT, wait_detail='queue "narrow" runs 1 of its max_workers 1')
    t.attempt_history.add(number=1, worker="w", outcome=task_pb2.ATTEMPT_OUTCOME_TIMED_OUT, error="attempt 1 timed out after 5s")
    t.attempt_history.add(number=2, worker="w", outcome=task_pb2.ATTEMPT_OUTCOME_GIVEN_BACK).ended_at.FromSeconds(60)
    t.attempt_history.add(number=2, worker="w", outcome=task_pb2.ATTEMPT_OUTCOME_SNOOZED)
    t.attempt_history.add(number=2, worker="w", outcome=task_pb2.ATTEMPT_OUTCOME_RUNNING)
    t.attempt_history.add(number=2, worker="w", outcome=99)  # type: ignore[arg-type]  # from a newer server
    task = task_from_pb(t)
    assert [(a.number, a.outcome, a.error) for a in task.attempt_history] == [
        (1, "timed_out", "attempt 1 timed out after 5s"),
        (2, "given_back", ""),
        (2, "snoozed", ""),
        (2, "running", ""),
        (2, "unspecified", ""),
    ]
    assert [task.attempt_history[i].ended_at for i in (1, 3)] == [datetime(1970, 1, 1, 0, 1, tzinfo=UTC), None]
    assert task.waiting == taskq.WaitingInfo("queue_limit", 'queue "narrow" runs 1 of its max_workers 1')
    assert task_from_pb(task_pb2.Task(id="2")).waiting is None, "unset: the task does not wait"
    assert task_from_pb(task_pb2.Task(id="3", wait_reason=99)).waiting is None, "a reason this SDK does not know"  # type: ignore[arg-type]


def test_the_generated_code_is_what_generate_py_makes() -> None:
    check = subprocess.run([sys.executable, str(PYTHON_DIR / "generate.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def _task(**fields: object) -> taskq.TaskInfo:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    base: dict[str, object] = dict(
        id="1", type="t", queue="default", status="pending", title="", display_title="", priority=0, priority_band="low",
        origin="user", initiator="", display_initiator="", node_id="", params={}, attempts=0, max_attempts=10, created_at=t0,
        started_at=None, finished_at=None, next_try_at=None, deadline=None, worker="", status_values={}, log=[], result=None,
        error="", timeout=None, retry_delay=30.0, idempotency_key="", concurrency_key="", attempt_history=[], waiting=None,
    )  # fmt: skip
    base.update(fields)
    return taskq.TaskInfo(**base)  # type: ignore[arg-type]


def retry_delay_of(err: BaseException, cancelled: CancelReason | None = None) -> float | None:
    """The delay of the retry that `err`, raised by a handler, becomes; None for a retry without one."""
    finish = worker_pb2.Finish()
    _set_error(finish, err, cancelled)
    assert finish.WhichOneof("outcome") == "retry", finish
    return finish.retry.delay.ToNanoseconds() / 1e9 if finish.retry.HasField("delay") else None


def test_a_retryable_errors_delay_is_held_to_what_the_protocol_takes() -> None:
    assert retry_delay_of(taskq.RetryableError("again")) is None
    assert retry_delay_of(taskq.RetryableError("again", delay=1.5)) == 1.5
    assert retry_delay_of(taskq.RetryableError("again", delay=-5)) == 0
    assert retry_delay_of(taskq.RetryableError("again", delay=float("inf"))) == 7 * 24 * 3600
    assert retry_delay_of(taskq.RetryableError("again", delay=float("nan"))) is None


def test_whatever_an_attempt_cut_off_raises_is_a_retry_at_once() -> None:
    assert retry_delay_of(taskq.TaskCancelled("worker_stopping"), "worker_stopping") == 0
    assert retry_delay_of(ValueError("half done"), "lease_lost") == 0
    assert retry_delay_of(taskq.RetryableError("again", delay=60), "interrupted") == 0
    assert retry_delay_of(taskq.TaskSnoozed(60), "timed_out") == 0, "a snooze cut off is a retry at once too, as in TypeScript"


def snooze_delay_of(err: taskq.TaskSnoozed) -> float:
    """The delay of the snooze that `err`, raised by a handler, becomes."""
    finish = worker_pb2.Finish()
    _set_error(finish, err, None)
    assert finish.WhichOneof("outcome") == "snooze", finish
    assert finish.snooze.HasField("delay"), "always a delay: none is not a snooze the server takes"
    return float(finish.snooze.delay.ToNanoseconds() / 1e9)


def test_a_snoozes_delay_is_held_to_what_the_protocol_takes() -> None:
    assert snooze_delay_of(taskq.TaskSnoozed(1.5)) == 1.5
    assert snooze_delay_of(taskq.TaskSnoozed(0)) == 0
    assert snooze_delay_of(taskq.TaskSnoozed(-5)) == 0
    assert snooze_delay_of(taskq.TaskSnoozed(float("inf"))) == 7 * 24 * 3600
    assert snooze_delay_of(taskq.TaskSnoozed(float("nan"))) == 0
