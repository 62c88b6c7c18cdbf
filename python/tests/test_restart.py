"""
A server restart in the middle of a task: the server drains, tells the worker to stop the task and gives
it back to the queue; it starts again on the same port and database; the worker reconnects and runs the
task again; a watch that began before the restart goes on and sees every log step once; later tasks run.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from conftest import ServerProcess
from helpers import wait_until

import taskq
from taskq import LogEvent, SnapshotEvent, StatusEvent, TaskContext


def test_watch_and_worker_survive_a_server_restart(
    server: ServerProcess, client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    worker = make_worker(on_event=lambda event, detail: events.append((event, detail)))
    runs: list[str | None] = []

    @worker.task(types("long"))
    def long(ctx: TaskContext) -> object:
        runs.append(None)
        if len(runs) == 1:
            ctx.log("before the restart")
            ctx.sleep(60)  # the server's shutdown cancels this (reason "shutdown")
        ctx.log("after the restart")
        return {"runs": len(runs)}

    @worker.task(types("later"))
    def later(ctx: TaskContext) -> object:
        return "ran"

    worker.start(timeout=20)
    handle = client.dispatch(types("long"))
    seen: list[str] = []
    statuses: list[str] = []
    restarted = threading.Event()
    for event in handle.watch(timeout=60):
        if isinstance(event, SnapshotEvent):
            seen += [s.message for s in event.task.log]
        elif isinstance(event, LogEvent):
            seen.append(event.step.message)
        elif isinstance(event, StatusEvent):
            statuses.append(event.status)
        if seen == ["before the restart"] and not restarted.is_set():
            restarted.set()
            assert server.stop() == 0, "the server exits cleanly after its drain"
            server.start()
    assert seen == ["before the restart", "after the restart"], "every step once, in order, across the restart"
    assert statuses[-1] == "completed"
    assert handle.result(timeout=20) == {"runs": 2}
    assert handle.status().attempts == 1, "the server gave the interrupted attempt back"
    assert client.dispatch(types("later")).result(timeout=20) == "ran"
    wait_until("a second welcome", lambda: sum(1 for e, _ in events if e == "connected") >= 2)
