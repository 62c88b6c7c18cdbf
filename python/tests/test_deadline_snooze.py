"""
Against a real server: a handler that legitimately runs long extends its deadline
(ctx.extend_deadline); one that cannot proceed yet snoozes (ctx.snooze), and the task runs again
without spending an attempt. And in immediate mode, where there is no timeout and no queue.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import taskq
from taskq import TaskContext


def test_extend_deadline_lets_a_handler_outlive_its_timeout(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    deadlines: list[datetime | None] = []

    @worker.task(types("long"))
    def long(ctx: TaskContext) -> object:
        ctx.extend_deadline(60)
        ctx.sleep(1.5)  # three times its timeout: raises TaskCancelled if the attempt times out meanwhile
        deadlines.append(client.status(ctx.id).deadline)
        return "outlived its timeout"

    worker.start(timeout=20)
    handle = client.dispatch(types("long"), timeout=0.5, max_attempts=1)
    assert handle.result(timeout=20) == "outlived its timeout"
    assert handle.status().attempt_history[0].outcome == "succeeded"
    # Read 1.5 s after the extension: at least 60 s from then, so more than 55 s from now.
    assert deadlines[0] is not None and deadlines[0] > datetime.now(UTC) + timedelta(seconds=55), deadlines


def test_snooze_runs_the_handler_again_after_its_delay_without_spending_the_attempt(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    runs: list[int] = []

    @worker.task(types("snoozy"))
    def snoozy(ctx: TaskContext) -> object:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            ctx.snooze(0.2)
        return "second run"

    worker.start(timeout=20)
    handle = client.dispatch(types("snoozy"), max_attempts=1, retry_delay=60)  # a retry would wait a minute
    assert handle.result(timeout=20) == "second run"
    assert runs == [1, 1], "a snoozed attempt is not spent"
    task = handle.status()
    assert task.attempts == 1
    assert [a.outcome for a in task.attempt_history] == ["snoozed", "succeeded"]
    first, second = task.attempt_history
    assert first.ended_at is not None
    gap = (second.started_at - first.ended_at).total_seconds()
    assert gap >= 0.2, f"ran again {gap} s after snoozing for 0.2"


def test_in_immediate_mode_extend_deadline_does_nothing_and_snooze_fails_the_run(tmp_path: Path) -> None:
    worker = taskq.Worker(storage_dir=tmp_path)
    lines: list[str] = []

    @worker.task("py.immediate.long")
    def long(ctx: TaskContext) -> object:
        ctx.extend_deadline(60)
        return "done"

    @worker.task("py.immediate.snooze")
    def snooze(ctx: TaskContext) -> object:
        ctx.snooze(30)

    assert worker.run_immediate("py.immediate.long", report=lines.append) == "done"
    assert lines == [], "an extension reports nothing"
    with pytest.raises(taskq.TaskSnoozed) as raised:
        worker.run_immediate("py.immediate.snooze", report=lines.append)
    assert (raised.value.delay, raised.value.code) == (30, taskq.StatusCode.UNAVAILABLE)
    assert isinstance(raised.value, taskq.TaskqError)


def test_extend_deadline_refuses_nan_at_the_call(tmp_path: Path) -> None:
    worker = taskq.Worker(storage_dir=tmp_path)

    @worker.task("py.immediate.nan")
    def nan(ctx: TaskContext) -> object:
        ctx.extend_deadline(float("nan"))
        return "unreachable"

    with pytest.raises(taskq.TaskqError) as raised:
        worker.run_immediate("py.immediate.nan", report=lambda line: None)
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT
