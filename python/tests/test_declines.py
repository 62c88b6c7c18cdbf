"""
Leases the worker will not run go back with a decline (Finish.decline), so their attempts do not count:
one that arrives after stop() began (credits cannot be taken back), and one whose attempt was
cancelled while it waited for a handler thread (an interrupt, or its session's leases lapsed). The
second kind needs the pool's only thread held by a handler that ignores its cancellation, which
happens after its stream was cut: the worker connects again and takes the next lease at once.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import TOKENS, ServerProcess
from helpers import FreezableProxy, wait_until

import taskq
from taskq import TaskContext

Events = list[tuple[str, dict[str, Any]]]


def declined(events: Events, task_id: str) -> bool:
    return any(e == "lease declined" and d["task"] == task_id for e, d in events)


def test_a_lease_that_arrives_after_stop_began_is_declined_and_its_attempt_does_not_count(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    events: Events = []
    worker = make_worker(concurrency=2, on_event=lambda e, d: events.append((e, d)))
    started, release = threading.Event(), threading.Event()
    late_runs: list[int] = []

    @worker.task(types("busy"))
    def busy(ctx: TaskContext) -> object:
        started.set()
        assert release.wait(20)
        return "finished while stopping"

    @worker.task(types("late"))
    def late(ctx: TaskContext) -> object:
        late_runs.append(ctx.attempt)
        return "ran"

    worker.start(timeout=20)
    busy_handle = client.dispatch(types("busy"))
    assert started.wait(20)
    stopping = threading.Thread(target=worker.stop, kwargs={"grace": 20})
    stopping.start()
    wait_until("the worker to drain", lambda: any(e == "draining" for e, _ in events))
    # The stopping worker still holds its second credit: the server leases it the next task.
    late_handle = client.dispatch(types("late"))
    wait_until("the late lease to be declined", lambda: declined(events, late_handle.id))
    release.set()
    stopping.join(20)
    assert not stopping.is_alive()
    assert busy_handle.result(timeout=20) == "finished while stopping"
    task = late_handle.status()
    assert (task.status, task.attempts, late_runs) == ("pending", 0, [])


@dataclass
class HeldThread:
    """A worker of one handler thread, held by a handler whose stream was cut; a second session is open."""

    worker: taskq.Worker
    client: taskq.TaskClient
    proxy: FreezableProxy
    release: threading.Event
    events: Events = field(default_factory=list)
    # Each start of the "next" handler: the attempt, and whether its context was already cancelled.
    starts: list[tuple[int, bool]] = field(default_factory=list)


@pytest.fixture
def held(strict_server: ServerProcess, tmp_path: Path, types: Callable[[str], str]) -> Iterator[HeldThread]:
    parts = urlsplit(strict_server.url)
    proxy = FreezableProxy(str(parts.hostname), int(parts.port or 0))
    events: Events = []
    worker = taskq.Worker(proxy.url, TOKENS["worker"], concurrency=1, storage_dir=tmp_path, on_event=lambda e, d: events.append((e, d)))
    client = taskq.TaskClient(strict_server.url, TOKENS["client"])
    h = HeldThread(worker, client, proxy, threading.Event(), events)
    holding = threading.Event()

    @worker.task(types("hold"))
    def hold(ctx: TaskContext) -> object:
        holding.set()
        h.release.wait(60)  # deaf to its cancellation
        return "released"

    @worker.task(types("next"))
    def next_task(ctx: TaskContext) -> object:
        h.starts.append((ctx.attempt, ctx.cancelled.is_set()))
        return "ran"

    try:
        worker.start(timeout=20)
        client.dispatch(types("hold"), max_attempts=1)  # cut off, it ends STUCK, not leased again
        assert holding.wait(20)
        proxy.cut()
        wait_until("a second session", lambda: sum(1 for e, _ in events if e == "connected") == 2)
        yield h
    finally:
        h.release.set()
        worker.stop(grace=1)
        client.close()
        proxy.close()


def test_a_lease_interrupted_while_it_waits_for_a_thread_is_declined_at_once(held: HeldThread, types: Callable[[str], str]) -> None:
    handle = held.client.dispatch(types("next"))
    # Its attempt and the held one (aborted, still running) are the worker's two.
    wait_until("the lease to wait for the held thread", lambda: held.worker.running == 2)
    assert handle.interrupt("not needed") == "cancelling"
    # Well within the interrupt's grace (30 s): the worker gave the lease back without waiting for a thread.
    with pytest.raises(taskq.TaskFailedError) as raised:
        handle.result(timeout=20)
    assert raised.value.status == "canceled"
    wait_until("the decline's answer", lambda: declined(held.events, handle.id))
    assert held.starts == []


def test_a_lease_whose_validity_lapsed_while_it_waited_for_a_thread_never_starts(held: HeldThread, types: Callable[[str], str]) -> None:
    handle = held.client.dispatch(types("next"))
    # Its attempt and the held one (aborted, still running) are the worker's two.
    wait_until("the lease to wait for the held thread", lambda: held.worker.running == 2)
    held.proxy.freeze()
    wait_until("the session to lapse", lambda: any(e == "disconnected" and "lapsed" in str(d["error"]) for e, d in held.events))
    held.proxy.thaw()
    held.release.set()  # the thread is free now: the lapsed attempt must not start on it
    assert handle.result(timeout=30) == "ran"
    assert len(held.starts) == 1 and held.starts[0][1] is False, held.starts
