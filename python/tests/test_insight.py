"""
What the client tells besides a task's status, against a real server: every attempt of a task, why a
pending task waits, the connected workers, and how long a queue's oldest due task has waited.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from helpers import wait_until

import taskq
from taskq import RetryableError, TaskContext


def test_attempt_history_lists_a_retry_then_the_success_in_order(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker(name=types("worker"))
    second_began, go_on = threading.Event(), threading.Event()

    @worker.task(types("flaky"))
    def flaky(ctx: TaskContext) -> object:
        if ctx.attempt == 1:
            raise RetryableError("upstream said 503", delay=0)
        second_began.set()
        assert go_on.wait(20), "the test never let the second attempt finish"
        return "done"

    worker.start(timeout=20)
    handle = client.dispatch(types("flaky"), max_attempts=3)
    assert second_began.wait(20), "the second attempt never began"
    running = handle.status()
    assert [(a.number, a.outcome, a.error) for a in running.attempt_history] == [(1, "failed", "upstream said 503"), (2, "running", "")]
    assert running.attempt_history[1].ended_at is None
    assert running.waiting is None, "a running task waits for nothing"

    go_on.set()
    assert handle.result(timeout=20) == "done"
    done = handle.status()
    assert [(a.number, a.worker, a.outcome, a.error) for a in done.attempt_history] == [
        (1, types("worker"), "failed", "upstream said 503"),
        (2, types("worker"), "succeeded", ""),
    ]
    first, second = done.attempt_history
    assert first.replica != "" and second.replica == first.replica, "one server replica held both sessions"
    assert first.ended_at is not None and second.ended_at is not None
    assert first.started_at <= first.ended_at <= second.started_at <= second.ended_at
    assert (done.error, done.waiting) == ("", None)

    # Lists carry no attempt history: only Status reads it.
    listed = client.list_history(type=types("flaky")).tasks
    assert [(t.id, t.attempt_history) for t in listed] == [(handle.id, [])]


def test_a_pending_task_says_why_it_waits(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    orphan = client.dispatch(types("nobody"))  # no worker runs this type
    later = client.dispatch(types("later"), delay=3600)
    try:
        waiting = orphan.status().waiting
        assert waiting is not None and waiting.reason == "no_worker"
        assert f'type "{types("nobody")}"' in waiting.detail, waiting.detail

        waiting = later.status().waiting
        assert waiting is not None and waiting.reason == "not_due"
        assert waiting.detail.startswith("due at "), waiting.detail

        # ListActive says it too.
        [listed] = client.list_active(type=types("nobody")).tasks
        assert (listed.id, listed.waiting) == (orphan.id, orphan.status().waiting)
    finally:
        orphan.interrupt()
        later.interrupt()
    assert orphan.status().waiting is None, "a canceled task waits for nothing"


def test_list_workers_shows_a_connected_worker_with_its_hello_and_running_tasks(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    sessions: list[str] = []
    worker = make_worker(
        name=types("lister"),
        concurrency=3,
        on_event=lambda event, detail: sessions.append(detail["session_id"]) if event == "connected" else None,
    )
    began, go_on = threading.Event(), threading.Event()

    @worker.task(types("hold"))
    def hold(ctx: TaskContext) -> object:
        began.set()
        assert go_on.wait(20), "the test never let the task finish"
        return None

    worker.start(timeout=20)
    handle = client.dispatch(types("hold"))
    assert began.wait(20), "the task never began"
    try:
        [listed] = [w for w in client.list_workers() if w.name == types("lister")]
        assert listed.session_id == sessions[-1]
        assert sorted(listed.task_types) == sorted([types("hold"), taskq.TEMP_CLEANUP_TYPE])
        assert (listed.queues, listed.concurrency) == ([], 3)
        assert (listed.running, listed.running_task_ids) == (1, [handle.id])
        assert listed.replica_id != ""
        assert isinstance(listed.connected_at, datetime) and listed.connected_at <= listed.heartbeat_at
        assert listed.last_heard_at is None or isinstance(listed.last_heard_at, datetime)
    finally:
        go_on.set()
    assert handle.result(timeout=20) is None

    worker.stop(grace=1)
    wait_until("the stopped worker gone from the list", lambda: all(w.name != types("lister") for w in client.list_workers()))


def test_a_queue_says_how_long_its_oldest_due_task_has_waited(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    def default_queue() -> taskq.QueueInfo:
        return next(q for q in client.list_queues().queues if q.name == "default")

    handle = client.dispatch(types("nobody"))  # due at once, and no worker runs it
    dispatched = time.monotonic()
    try:
        # It grows while the task waits: at least as long as it has waited (an older task may wait longer).
        wait_until("the wait to show", lambda: default_queue().oldest_due >= 0.2)
        waited = time.monotonic() - dispatched
        oldest_due = default_queue().oldest_due
        assert isinstance(oldest_due, float)
        assert oldest_due >= waited - 0.01, (oldest_due, waited)
    finally:
        handle.interrupt()
