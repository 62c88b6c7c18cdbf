"""
Limits on keys, as the SDK reads them: a task whose key runs its queue's max_running_per_key tasks
already waits with the reason "key_limit", one whose queue's rate limit has no token with "rate_limit",
and list_queues() shows the queues' key settings, their keys, their buckets and what each limit holds
back. The servers' limits come from their config file (TASKQ_CONFIG). The first test needs no server.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess, running_server
from helpers import wait_until

import taskq
from taskq import QueueKeyInfo, RateLimitInfo, TaskContext
from taskq._gen import task_pb2, task_queue_pb2
from taskq.types import queue_from_pb, task_from_pb

HOUR_MS = 3_600_000
CONFIG = {
    "queues": {
        "tenants": {"max_running_per_key": 1},
        "metered": {"rate_limit": {"tasks": 1, "per_ms": HOUR_MS, "burst": 1}},
    }
}


def test_the_key_settings_and_wait_reasons_become_python_values() -> None:
    q = task_queue_pb2.Queue(
        name="tenants", max_running_per_key=2, urgent_priority=100, key_count=3, held_by_key_limit=4, held_by_rate_limit=5
    )
    q.key_weights["enterprise-co"] = 3
    q.rate_limit.tasks, q.rate_limit.burst, q.rate_limit.tokens = 100, 10, 0.25
    q.rate_limit.per.FromMilliseconds(1500)
    q.rate_limit_per_key.tasks, q.rate_limit_per_key.burst = 10, 1
    q.rate_limit_per_key.per.FromMilliseconds(60_000)
    q.keys.add(key="acme", running=2, pending=7, tokens=0.5)
    q.keys.add(key="globex", running=0, pending=1)
    info = queue_from_pb(q)
    assert (info.max_running_per_key, info.key_weights, info.urgent_priority) == (2, {"enterprise-co": 3}, 100)
    assert info.rate_limit == RateLimitInfo(tasks=100, per_ms=1500.0, burst=10, tokens=0.25)
    assert info.rate_limit_per_key == RateLimitInfo(tasks=10, per_ms=60_000.0, burst=1, tokens=0.0)
    assert info.keys == [QueueKeyInfo("acme", 2, 7, 0.5), QueueKeyInfo("globex", 0, 1, None)], "no tokens: None"
    assert (info.key_count, info.held_by_key_limit, info.held_by_rate_limit) == (3, 4, 5)

    bare = queue_from_pb(task_queue_pb2.Queue(name="default"))
    assert (bare.max_running_per_key, bare.key_weights, bare.urgent_priority) == (None, {}, None), "unset: no limit"
    assert (bare.rate_limit, bare.rate_limit_per_key, bare.keys, bare.key_count) == (None, None, [], 0)
    assert (bare.held_by_key_limit, bare.held_by_rate_limit) == (0, 0)

    for number, name in [(task_pb2.WAIT_REASON_KEY_LIMIT, "key_limit"), (task_pb2.WAIT_REASON_RATE_LIMIT, "rate_limit")]:
        waiting = task_from_pb(task_pb2.Task(id="1", wait_reason=number, wait_detail="why")).waiting
        assert waiting == taskq.WaitingInfo(name, "why")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own whose queues "tenants" and "metered" limit keys and starts (CONFIG)."""
    log_dir = tmp_path_factory.mktemp("limited-server")
    config = log_dir / "taskq.json"
    config.write_text(json.dumps(CONFIG))
    yield from running_server(log_dir, {"TASKQ_CONFIG": str(config), "TASKQ_BUILTIN_SCHEDULES": "off"})


@pytest.fixture(scope="module")
def limited_client(limited_server: ServerProcess) -> Iterator[taskq.TaskClient]:
    with taskq.TaskClient(limited_server.url, call_timeout=30) as c:
        yield c


@pytest.fixture
def limited_worker(limited_server: ServerProcess, tmp_path: Path) -> Iterator[taskq.Worker]:
    """A worker of limited_server, stopped when the test ends (running handlers get a second)."""
    worker = taskq.Worker(limited_server.url, concurrency=4, storage_dir=tmp_path / "storage")
    yield worker
    worker.stop(grace=1)


def queue_named(client: taskq.TaskClient, name: str) -> taskq.QueueInfo:
    return next(q for q in client.list_queues().queues if q.name == name)


def wait_reason(handle: taskq.TaskHandle) -> str | None:
    waiting = handle.status().waiting
    return waiting.reason if waiting else None


def test_a_key_at_its_limit_holds_its_next_task_and_list_queues_shows_it(
    limited_client: taskq.TaskClient, limited_worker: taskq.Worker, types: Callable[[str], str]
) -> None:
    started = threading.Event()
    go_on = threading.Event()

    @limited_worker.task(types("tenant"))
    def tenant(ctx: TaskContext) -> object:
        if ctx.params.get("hold"):
            started.set()
            assert go_on.wait(20), "the test never let the handler finish"
        return ctx.concurrency_key

    limited_worker.start(timeout=20)
    try:
        first = limited_client.dispatch(types("tenant"), {"hold": True}, queue="tenants", concurrency_key="acme")
        assert started.wait(20), "the first task never started"
        second = limited_client.dispatch(types("tenant"), queue="tenants", concurrency_key="acme")
        # Another key is not held by acme's limit.
        assert limited_client.dispatch(types("tenant"), queue="tenants", concurrency_key="globex").result(timeout=20) == "globex"

        wait_until("the second task to wait on its key", lambda: wait_reason(second) == "key_limit")
        waiting = second.status().waiting
        assert waiting == taskq.WaitingInfo("key_limit", 'key "acme" runs 1 of queue "tenants"\'s max_running_per_key 1')
        assert second.status().status == "pending"

        queue = queue_named(limited_client, "tenants")
        assert queue.max_running_per_key == 1
        assert (queue.rate_limit, queue.rate_limit_per_key) == (None, None)
        assert queue.keys == [QueueKeyInfo("acme", running=1, pending=1, tokens=None)], "globex finished: no task left"
        assert (queue.key_count, queue.held_by_key_limit, queue.held_by_rate_limit) == (1, 1, 0)
        assert (queue.running, queue.pending) == (1, 1)
    finally:
        go_on.set()
    assert first.result(timeout=20) == "acme"
    assert second.result(timeout=20) == "acme", "the held task runs once the key's first is done"
    queue = queue_named(limited_client, "tenants")
    assert (queue.keys, queue.key_count, queue.held_by_key_limit) == ([], 0, 0)


def test_a_queue_without_tokens_holds_its_next_task_and_list_queues_shows_the_bucket(
    limited_client: taskq.TaskClient, limited_worker: taskq.Worker, types: Callable[[str], str]
) -> None:
    @limited_worker.task(types("metered"))
    def metered(ctx: TaskContext) -> object:
        return "ran"

    limited_worker.start(timeout=20)
    full = queue_named(limited_client, "metered").rate_limit
    assert full is not None and full.tokens == pytest.approx(1.0), full
    # The bucket's one token goes to the first task; the next comes in an hour.
    assert limited_client.dispatch(types("metered"), queue="metered").result(timeout=20) == "ran"
    second = limited_client.dispatch(types("metered"), queue="metered")
    try:
        wait_until("the second task to wait on the rate limit", lambda: wait_reason(second) == "rate_limit")
        waiting = second.status().waiting
        assert waiting is not None
        assert re.fullmatch(
            r'queue "metered"\'s rate_limit \(1 per 3600000 ms, burst 1\) has no token free; the next comes in \d+ ms', waiting.detail
        ), waiting.detail

        queue = queue_named(limited_client, "metered")
        assert queue.rate_limit is not None
        assert (queue.rate_limit.tasks, queue.rate_limit.per_ms, queue.rate_limit.burst) == (1, HOUR_MS, 1)
        assert queue.rate_limit.tokens < 1, queue.rate_limit
        assert (queue.rate_limit_per_key, queue.max_running_per_key) == (None, None)
        assert (queue.held_by_rate_limit, queue.held_by_key_limit, queue.pending) == (1, 0, 1)
        assert second.status().status == "pending", "still held"
    finally:
        second.interrupt()
