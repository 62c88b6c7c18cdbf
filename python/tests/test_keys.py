"""
The concurrency key: sent by dispatch() and dispatch_batch(), read back by status() and the lists
before, during and after the task runs, handed to the handler as ctx.concurrency_key ("" when none,
and in immediate mode), kept by a retry, and refused by the server when too long or holding a NUL.
The first tests need no server.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import taskq
from taskq import StatusCode, TaskContext, TaskFailedError, TaskqError
from taskq._gen import task_pb2
from taskq.client import dispatch_request
from taskq.types import task_from_pb


def test_the_key_goes_into_the_dispatch_request_and_comes_back_from_the_task() -> None:
    assert dispatch_request(taskq.DispatchItem("t", concurrency_key="tenant-7")).concurrency_key == "tenant-7"
    assert dispatch_request(taskq.DispatchItem("t")).concurrency_key == "", "none: sent empty"
    assert task_from_pb(task_pb2.Task(id="1", concurrency_key="tenant-7")).concurrency_key == "tenant-7"
    assert task_from_pb(task_pb2.Task(id="2")).concurrency_key == ""


def test_in_immediate_mode_the_key_is_empty(tmp_path: Path) -> None:
    worker = taskq.Worker(storage_dir=tmp_path)

    @worker.task("py.immediate.key")
    def key(ctx: TaskContext) -> object:
        return ctx.concurrency_key

    assert worker.run_immediate("py.immediate.key", report=lambda line: None) == ""


def test_the_handler_and_status_see_the_key_given_at_dispatch(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    started = threading.Event()
    go_on = threading.Event()

    @worker.task(types("keyed"))
    def keyed(ctx: TaskContext) -> object:
        if ctx.params.get("hold"):
            started.set()
            assert go_on.wait(20), "the test never let the handler finish"
        return {"key": ctx.concurrency_key}

    # Pending: status and list_active show the key before any worker has the task.
    handle = client.dispatch(types("keyed"), {"hold": True}, concurrency_key="tenant-7")
    assert handle.status().concurrency_key == "tenant-7"
    [listed] = client.list_active(type=types("keyed")).tasks
    assert (listed.id, listed.concurrency_key) == (handle.id, "tenant-7")

    worker.start(timeout=20)
    assert started.wait(20), "the handler never started"
    running = handle.status()
    assert (running.status, running.concurrency_key) == ("running", "tenant-7")
    go_on.set()
    assert handle.result(timeout=20) == {"key": "tenant-7"}
    done = handle.status()
    assert (done.status, done.concurrency_key) == ("completed", "tenant-7")
    [history] = [t for t in client.list_history(type=types("keyed")).tasks if t.id == handle.id]
    assert history.concurrency_key == "tenant-7"

    # Without a key: "" everywhere.
    plain = client.dispatch(types("keyed"))
    assert plain.result(timeout=20) == {"key": ""}
    assert plain.status().concurrency_key == ""


def test_a_batch_sends_each_tasks_own_key(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()

    @worker.task(types("keyed"))
    def keyed(ctx: TaskContext) -> object:
        return ctx.concurrency_key

    worker.start(timeout=20)
    keys = ["tenant-1", "", "tenant-2"]
    handles = client.dispatch_batch([taskq.DispatchItem(types("keyed"), concurrency_key=k or None) for k in keys])
    assert [h.result(timeout=20) for h in handles] == keys
    assert [h.status().concurrency_key for h in handles] == keys


def test_a_retry_keeps_the_key(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    runs: list[str] = []

    @worker.task(types("flaky"))
    def flaky(ctx: TaskContext) -> object:
        runs.append(ctx.concurrency_key)
        if len(runs) == 1:
            raise ValueError("first time")
        return "ok"

    worker.start(timeout=20)
    first = client.dispatch(types("flaky"), max_attempts=1, concurrency_key="tenant-9")
    with pytest.raises(TaskFailedError):
        first.result(timeout=20)
    retry = first.retry()
    assert retry.result(timeout=20) == "ok"
    assert retry.status().concurrency_key == "tenant-9"
    assert runs == ["tenant-9", "tenant-9"]


@pytest.mark.parametrize("key", ["k" * 201, "tenant\x007"], ids=["201 characters", "NUL"])
def test_the_server_refuses_a_key_too_long_or_holding_a_nul(
    client: taskq.TaskClient, types: Callable[[str], str], key: str
) -> None:
    with pytest.raises(TaskqError) as refused:
        client.dispatch(types("refused"), concurrency_key=key)
    assert refused.value.code == StatusCode.INVALID_ARGUMENT, refused.value
    with pytest.raises(TaskqError) as refused_batch:
        client.dispatch_batch([taskq.DispatchItem(types("refused")), taskq.DispatchItem(types("refused"), concurrency_key=key)])
    assert refused_batch.value.code == StatusCode.INVALID_ARGUMENT, refused_batch.value
    assert client.list_active(type=types("refused")).tasks == [], "a refused call queues nothing"


def test_a_key_of_200_characters_is_taken(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    key = "k" * 200
    handle = client.dispatch(types("long"), concurrency_key=key, delay=3600)
    assert handle.status().concurrency_key == key
    handle.interrupt()
