"""The worker against a real server: results, logs, retries, failures, cancellation, timeouts, limits, async handlers."""
from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

import pytest
from helpers import wait_until

import taskq
from taskq import LogEvent, RetryableError, SnapshotEvent, StatusEvent, StatusValueEvent, TaskContext


def test_dispatch_and_result(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()

    @worker.task(types("add"))
    def add(ctx: TaskContext) -> object:
        ctx.log(f"adding {ctx.params['a']} and {ctx.params['b']}")
        return {"sum": ctx.params["a"] + ctx.params["b"]}  # type: ignore[operator]

    worker.start(timeout=20)
    handle = client.dispatch(types("add"), {"a": 2, "b": 5}, title="Addition")
    assert handle.result(timeout=20) == {"sum": 7}
    task = handle.status()
    assert (task.status, task.attempts, task.title) == ("completed", 1, "Addition")
    assert [s.message for s in task.log] == ["adding 2 and 5"]


def test_watch_sees_the_log_live_and_resumes_after_a_seen_step(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    go_on = threading.Event()

    @worker.task(types("steps"))
    def steps(ctx: TaskContext) -> object:
        ctx.log("step 1")
        ctx.progress(50)
        assert go_on.wait(20), "the test never saw step 1"
        ctx.log("step 2")
        return "done"

    worker.start(timeout=20)
    handle = client.dispatch(types("steps"))
    seen: list[str] = []
    statuses: list[str] = []
    values: dict[str, object] = {}
    for event in handle.watch(timeout=20):
        if isinstance(event, SnapshotEvent):
            seen += [s.message for s in event.task.log]
            values.update(event.task.status_values)
        elif isinstance(event, LogEvent):
            seen.append(event.step.message)
        elif isinstance(event, StatusValueEvent):
            values[event.key] = event.value
        elif isinstance(event, StatusEvent):
            statuses.append(event.status)
        if seen == ["step 1"]:
            go_on.set()  # step 2 is written only now: the watch saw step 1 live
    assert seen == ["step 1", "step 2"]
    assert statuses[-1] == "completed"
    assert values == {"progress": 50}

    # Watching again after step 1: the snapshot holds only what came after it.
    first = next(iter(handle.watch(after_seq=1, timeout=20)))
    assert isinstance(first, SnapshotEvent)
    assert [s.message for s in first.task.log] == ["step 2"]
    assert first.task.result == "done"


def test_retryable_error_runs_again_after_its_delay(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()

    @worker.task(types("flaky"))
    def flaky(ctx: TaskContext) -> object:
        ctx.log(f"attempt {ctx.attempt}")
        if ctx.attempt < 3:
            raise RetryableError(f"not yet ({ctx.attempt})", delay=0.2)
        return {"attempt": ctx.attempt}

    worker.start(timeout=20)
    handle = client.dispatch(types("flaky"), retry_delay=60)  # the error's delay, not the task's, applies
    assert handle.result(timeout=20) == {"attempt": 3}
    task = handle.status()
    assert task.attempts == 3
    times = [s.time for s in task.log]
    assert [s.message for s in task.log] == ["attempt 1", "attempt 2", "attempt 3"]
    assert all((b - a).total_seconds() >= 0.19 for a, b in itertools.pairwise(times)), times


def test_an_exception_fails_the_task_with_its_message(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()

    @worker.task(types("fail"))
    def fail(ctx: TaskContext) -> object:
        raise ValueError("the input is bad")

    worker.start(timeout=20)
    handle = client.dispatch(types("fail"), max_attempts=5)
    with pytest.raises(taskq.TaskFailedError) as raised:
        handle.result(timeout=20)
    assert raised.value.status == "failed"
    assert raised.value.code == taskq.StatusCode.UNKNOWN
    assert raised.value.task.error == "the input is bad"
    assert raised.value.task.attempts == 1, "a failure is final whatever attempts remain"


def test_interrupt_wakes_a_sleeping_handler_and_the_task_ends_canceled(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    reasons: list[object] = []

    @worker.task(types("sleep"))
    def sleep(ctx: TaskContext) -> object:
        ctx.log("sleeping")
        try:
            ctx.sleep(60)
        except taskq.TaskCancelled as err:
            reasons.append(err.reason)
            raise
        return "woke up"

    worker.start(timeout=20)
    handle = client.dispatch(types("sleep"))
    for event in handle.watch(timeout=20):
        if isinstance(event, LogEvent):
            assert handle.interrupt("enough") == "cancelling"
    with pytest.raises(taskq.TaskFailedError) as raised:
        handle.result(timeout=20)
    assert raised.value.status == "canceled"
    assert raised.value.task.error == "interrupted: enough"
    assert reasons == ["interrupted"]


def test_a_per_type_timeout_cancels_the_attempt(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    reasons: list[object] = []

    @worker.task(types("slow"), timeout=0.3)
    def slow(ctx: TaskContext) -> object:
        ctx.cancelled.wait(60)
        reasons.append(ctx.cancel_reason)
        ctx.raise_if_cancelled()
        return "too late"

    worker.start(timeout=20)
    handle = client.dispatch(types("slow"), max_attempts=1)
    with pytest.raises(taskq.TaskFailedError) as raised:
        handle.result(timeout=20)
    assert raised.value.status == "stuck"
    assert "timed out after 0.3s" in raised.value.task.error
    wait_until("the handler to hear of the timeout", lambda: reasons == ["timed_out"])


def test_integers_round_trip_as_integers(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    seen: list[object] = []

    @worker.task(types("echo"))
    def echo(ctx: TaskContext) -> object:
        seen.append(ctx.params)
        return ctx.params

    worker.start(timeout=20)
    params = {"n": 7, "neg": -3, "limit": 2**53, "half": 2.5, "whole": 4.0, "nested": {"list": [1, 2.0, None, True, "s"]}}
    result = client.dispatch(types("echo"), params).result(timeout=20)
    expected = {"n": 7, "neg": -3, "limit": 2**53, "half": 2.5, "whole": 4, "nested": {"list": [1, 2, None, True, "s"]}}
    assert result == expected == seen[0]
    assert isinstance(result, dict) and type(result["n"]) is int and type(result["whole"]) is int and type(result["half"]) is float
    with pytest.raises(taskq.TaskqError) as raised:
        client.dispatch(types("echo"), {"n": 2**53 + 1})
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT


def test_a_result_over_the_limit_fails_the_attempt_as_retryable(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()

    @worker.task(types("large"))
    def large(ctx: TaskContext) -> object:
        size = taskq.MAX_RESULT_BYTES + 1 if ctx.attempt == 1 else 10
        return {"data": "x" * size}

    worker.start(timeout=20)
    handle = client.dispatch(types("large"), retry_delay=0.01)
    errors: list[str] = []
    for event in handle.watch(timeout=20):
        if isinstance(event, StatusEvent) and event.status == "pending" and event.error:
            errors.append(event.error)
    assert handle.result(timeout=20) == {"data": "x" * 10}
    assert handle.status().attempts == 2
    assert len(errors) == 1 and "larger than the limit of 1048576" in errors[0]


def test_a_status_value_json_cannot_hold_is_refused_at_the_call(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()

    @worker.task(types("nan-status"))
    def nan_status(ctx: TaskContext) -> object:
        try:
            ctx.set_status("score", float("nan"))
        except ValueError as err:  # a JsonValueError: a ValueError, and a TaskqError INVALID_ARGUMENT
            assert isinstance(err, taskq.TaskqError) and err.code == taskq.StatusCode.INVALID_ARGUMENT
            ctx.set_status("refused", str(err))
        return "went on"

    worker.start(timeout=20)
    handle = client.dispatch(types("nan-status"))
    assert handle.result(timeout=20) == "went on"
    assert handle.status().status_values == {"refused": "set_status(score): nan is not a JSON number (JSON has no NaN or infinity)"}


def test_a_result_json_cannot_hold_fails_the_task_saying_where(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()

    @worker.task(types("nan-result"))
    def nan_result(ctx: TaskContext) -> object:
        return {"scores": [1.5, float("-inf")]}

    worker.start(timeout=20)
    handle = client.dispatch(types("nan-result"), max_attempts=3)
    with pytest.raises(taskq.TaskFailedError) as raised:
        handle.result(timeout=20)
    assert raised.value.status == "failed"
    assert raised.value.task.error == "result.scores[1]: -inf is not a JSON number (JSON has no NaN or infinity)"
    assert raised.value.task.attempts == 1, "returning it again would not help"


def test_async_handlers_run_on_the_workers_loop_and_hear_cancellation(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()

    @worker.task(types("async"))
    async def fetch(ctx: TaskContext) -> object:
        ctx.log("fetching")
        await asyncio.sleep(0.01)
        return {"fetched": ctx.params["n"], "on_loop": asyncio.get_running_loop().is_running()}

    @worker.task(types("async-sleep"))
    async def nap(ctx: TaskContext) -> object:
        ctx.log("napping")
        await ctx.sleep_async(60)
        return "woke"

    worker.start(timeout=20)
    handles = client.dispatch_batch([taskq.DispatchItem(types("async"), {"n": i}) for i in range(5)])
    assert [h.result(timeout=20) for h in handles] == [{"fetched": i, "on_loop": True} for i in range(5)]
    napping = client.dispatch(types("async-sleep"))
    for event in napping.watch(timeout=20):
        if isinstance(event, LogEvent):
            napping.interrupt()
    assert napping.status().status == "canceled"


def test_stop_lets_a_running_handler_finish(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    started, release = threading.Event(), threading.Event()

    @worker.task(types("busy"))
    def busy(ctx: TaskContext) -> object:
        started.set()
        assert release.wait(20)
        return "finished while stopping"

    worker.start(timeout=20)
    handle = client.dispatch(types("busy"))
    assert started.wait(20)
    stopping = threading.Thread(target=worker.stop, kwargs={"grace": 20})
    stopping.start()
    wait_until("the worker to start stopping", lambda: worker._state == "stopping")
    release.set()
    stopping.join(20)
    assert not stopping.is_alive()
    assert handle.result(timeout=20) == "finished while stopping"
    assert handle.status().attempts == 1


def test_a_handler_cut_off_when_stops_grace_runs_out_runs_again_at_once(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    stopping = make_worker(concurrency=1)

    @stopping.task(types("stubborn"))
    def stubborn(ctx: TaskContext) -> object:
        ctx.log("started")
        ctx.sleep(60)  # raises TaskCancelled once cut off
        return "never"

    stopping.start(timeout=20)
    # An hour's retry delay: only the cut-off attempt's own delay of 0 lets the task run again within the test.
    handle = client.dispatch(types("stubborn"), max_attempts=3, retry_delay=3600)
    wait_until("the handler to start", lambda: stopping.running == 1)
    stopping.stop(grace=0.05)
    after = handle.status()
    assert (after.status, after.error) == ("pending", "the worker is stopping")

    following = make_worker(concurrency=1)
    following.register(types("stubborn"), lambda ctx: {"attempt": ctx.attempt})
    following.start(timeout=20)
    assert handle.result(timeout=20) == {"attempt": 2}


def test_a_refused_hello_makes_start_raise(make_worker: Callable[..., taskq.Worker]) -> None:
    worker = make_worker(queues=["no-such-queue"])
    worker.register("py.valid.type", lambda ctx: None)
    with pytest.raises(taskq.WorkerRefusedError) as raised:
        worker.start(timeout=20)
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT
    assert "no-such-queue" in raised.value.message
    with pytest.raises(taskq.TaskqError, match="worker already stopped"):
        worker.start(timeout=20)


def test_declared_schedules_reach_the_server(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    worker.register(types("nightly"), lambda ctx: None, schedule="0 3 * * *", time_zone="Europe/Berlin")
    worker.start(timeout=20)
    schedules = {s.name: s for s in client.list_schedules()}
    nightly = schedules[types("nightly")]
    assert (nightly.cron, nightly.time_zone, nightly.source, nightly.queue) == ("0 3 * * *", "Europe/Berlin", "worker", "scheduled")
