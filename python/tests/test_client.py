"""
The client against a real server: dispatch options, batches, idempotency, lists, queues, errors,
deadlines; and against a stand-in (fake_server.py), result()'s timeout when the outcome is slow to read.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fake_server import SlowStatusTaskQueue

import taskq


def test_dispatch_options_reach_the_task(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    handle = client.dispatch(
        types("opts"),
        {"k": "v"},
        title="With options",
        priority=12,
        initiator="pytest",
        timeout=90,
        max_attempts=4,
        retry_delay=1.5,
        backoff="exponential",
        run_at=run_at,
        idempotency_key=types("key"),
    )
    task = handle.status()
    assert (task.status, task.title, task.priority, task.priority_band, task.initiator) == ("pending", "With options", 12, "high", "pytest")
    assert (task.timeout, task.max_attempts, task.retry_delay, task.params) == (90.0, 4, 1.5, {"k": "v"})
    assert task.next_try_at is not None and abs((task.next_try_at - run_at).total_seconds()) < 0.01
    again = client.dispatch(types("opts"), idempotency_key=types("key"))
    assert (again.id, again.created, handle.created) == (handle.id, False, True)
    assert client.interrupt(handle.id, "not needed") == "canceled"


def test_batches_lists_and_queues(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    handles = client.dispatch_batch([taskq.DispatchItem(types("batch"), {"i": i}, title=f"Item {i}", delay=3600) for i in range(3)])
    assert len({h.id for h in handles}) == 3
    page = client.list_active(type=types("batch"), sort="title", descending=True)
    assert [t.title for t in page.tasks] == ["Item 2", "Item 1", "Item 0"]
    assert page.next_page_token == ""
    for h in handles:
        h.interrupt()
    history = client.list_history(type=types("batch"), statuses=["canceled"])
    assert sorted(t.id for t in history.tasks) == sorted(h.id for h in handles)

    queues = client.list_queues()
    assert {"default", "scheduled"} <= {q.name for q in queues.queues}
    try:
        assert client.pause_queue("default").paused is True
        assert next(q for q in client.list_queues().queues if q.name == "default").paused
    finally:
        assert client.resume_queue("default").paused is False


def test_errors_carry_the_servers_code(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    with pytest.raises(taskq.TaskqError) as raised:
        client.status("999999999")
    assert raised.value.code == taskq.StatusCode.NOT_FOUND
    with pytest.raises(taskq.TaskqError) as raised:
        client.dispatch(types("x"), queue="no-such-queue")
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT
    with pytest.raises(taskq.TaskqError) as raised:
        client.dispatch(types("x"), {"bad": float("nan")})
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT
    with pytest.raises(taskq.TaskqError) as raised:
        client.list_active(statuses=["sleeping"])  # type: ignore[list-item]
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT


def test_result_gives_up_at_its_timeout(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    handle = client.dispatch(types("never"))  # no worker runs this type
    with pytest.raises(taskq.TaskqError) as raised:
        handle.result(timeout=0.3)
    assert raised.value.code == taskq.StatusCode.DEADLINE_EXCEEDED
    handle.interrupt()


def test_result_gives_up_at_its_timeout_while_reading_the_outcome_too() -> None:
    server = SlowStatusTaskQueue()  # the task has ended, but reading it takes as long as the test lets it
    try:
        with taskq.TaskClient(server.url, call_timeout=60) as slow:
            began = time.monotonic()
            with pytest.raises(taskq.TaskqError) as raised:
                slow.handle("7").result(timeout=0.5)
            took = time.monotonic() - began
    finally:
        server.stop()
    assert (raised.value.code, raised.value.message) == (
        taskq.StatusCode.DEADLINE_EXCEEDED,
        "task 7 ended, but its outcome could not be read in time",
    )
    # Well past 0.5 s for a slow machine, far short of the client's call_timeout of 60 s.
    assert took < 20, took


def test_an_unreachable_server_ends_calls_and_watches_with_a_taskq_error() -> None:
    with taskq.TaskClient("http://127.0.0.1:1", call_timeout=0.3, watch_reconnect_timeout=0.3) as dead:
        with pytest.raises(taskq.TaskqError) as raised:
            dead.status("1")
        assert raised.value.code == taskq.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(taskq.TaskqError) as raised:
            list(dead.watch("1"))
        assert raised.value.code == taskq.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("url", ["127.0.0.1:50051", "ftp://host:1", "http://host:1/prefix", "http://:1"])
def test_urls_other_than_http_and_https_are_refused(url: str) -> None:
    with pytest.raises(taskq.TaskqError) as raised:
        taskq.TaskClient(url)
    assert raised.value.code == taskq.StatusCode.INVALID_ARGUMENT
