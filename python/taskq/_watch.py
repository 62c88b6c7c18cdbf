"""
A WatchTask stream that survives broken connections: when the stream fails (or ends before the
task's final status, as when a server replica stops), it watches again from the last log sequence
seen and turns the new snapshot into the events that were missed. The caller sees one snapshot, then
every change once and in order, until the final status.

States: opening (waiting for the server, with wait_for_ready) → streaming → done after a final
status; a break while opening or streaming waits with backoff and opens again. It gives up with
UNAVAILABLE once `reconnect_timeout` seconds pass without an event, and with DEADLINE_EXCEEDED when
the caller's deadline passes.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import grpc

from ._gen import task_queue_pb2
from ._json import dumps
from .errors import TaskqError
from .types import (
    LogEvent,
    SnapshotEvent,
    StatusEvent,
    StatusValueEvent,
    TaskInfo,
    WatchEvent,
    is_final,
    watch_event_from_pb,
)

# Codes after which watching again may work: the server or the network was the problem.
_RESUMABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}
_BACKOFF_INITIAL_S = 0.1
_BACKOFF_MAX_S = 2.0

OpenStream = Callable[[task_queue_pb2.WatchTaskRequest, "float | None"], "grpc.Call"]


def resuming_watch(
    open_stream: OpenStream,
    task_id: str,
    after_seq: int,
    reconnect_timeout: float,
    deadline: float | None = None,
) -> Iterator[WatchEvent]:
    """`open_stream(request, timeout)` starts one WatchTask call; `deadline` is a time.monotonic() value."""
    known: TaskInfo | None = None
    # Since when no stream has delivered an event: the first open, or the last break after events.
    outage_since: float | None = None
    delay = _BACKOFF_INITIAL_S
    while True:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise TaskqError(grpc.StatusCode.DEADLINE_EXCEEDED, f"task {task_id} did not reach a final status in time")
        if outage_since is None:
            outage_since = time.monotonic()
        call = open_stream(task_queue_pb2.WatchTaskRequest(task_id=task_id, after_seq=after_seq), timeout)
        # wait_for_ready waits for the server as long as it takes: the watchdog bounds that wait.
        gave_up = threading.Event()

        def give_up(call: grpc.Call = call, gave_up: threading.Event = gave_up) -> None:
            gave_up.set()
            call.cancel()

        watchdog = threading.Timer(max(0.0, outage_since + reconnect_timeout - time.monotonic()), give_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            for response in call:
                event = watch_event_from_pb(response)
                if event is None:
                    continue
                watchdog.cancel()
                outage_since = None
                delay = _BACKOFF_INITIAL_S
                missed = catch_up(known, event.task) if isinstance(event, SnapshotEvent) and known else [event]
                if isinstance(event, SnapshotEvent):
                    known = replace(event.task, status_values=dict(event.task.status_values), log=[])
                for e in missed:
                    if isinstance(e, LogEvent):
                        after_seq = max(after_seq, e.step.seq)
                    if isinstance(e, SnapshotEvent):
                        after_seq = max([after_seq, *(s.seq for s in e.task.log)])
                    if known is not None:
                        follow(known, e)
                    yield e
                if known is not None and is_final(known.status):
                    return
            # The stream ended before the final status (the server replica stopped): watch again.
        except grpc.RpcError as err:
            if gave_up.is_set():
                raise TaskqError(
                    grpc.StatusCode.UNAVAILABLE, f"watching task {task_id}: no answer from the server for {reconnect_timeout:g} s"
                ) from err
            code = err.code()
            if deadline is not None and code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() >= deadline:
                raise TaskqError(code, f"task {task_id} did not reach a final status in time") from err
            if code not in _RESUMABLE:
                raise TaskqError.from_rpc_error(err) from err
        finally:
            watchdog.cancel()
            call.cancel()
        if outage_since is not None and time.monotonic() - outage_since >= reconnect_timeout:
            raise TaskqError(grpc.StatusCode.UNAVAILABLE, f"watching task {task_id}: no answer from the server for {reconnect_timeout:g} s")
        pause = delay * random.uniform(0.5, 1.0)
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)
        delay = min(delay * 2, _BACKOFF_MAX_S)


def catch_up(known: TaskInfo, now: TaskInfo) -> list[WatchEvent]:
    """The events a watcher missed between what it knew and a fresh snapshot (whose log starts after it)."""
    events: list[WatchEvent] = [LogEvent(step) for step in now.log]
    for key, value in now.status_values.items():
        if key not in known.status_values or dumps(known.status_values[key]) != dumps(value):
            events.append(StatusValueEvent(key, value))
    if known.status != now.status or known.attempts != now.attempts:
        # The snapshot does not say when the status changed; the task's start or finish time does, for those.
        time_ = now.finished_at if is_final(now.status) else now.started_at if now.status == "running" else None
        events.append(StatusEvent(now.status, now.attempts, now.worker, now.result, now.error, time_))
    return events


def follow(known: TaskInfo, e: WatchEvent) -> None:
    """Keeps the known state in step with an event, so a later snapshot can be compared with it."""
    if isinstance(e, StatusValueEvent):
        known.status_values[e.key] = e.value
    elif isinstance(e, StatusEvent):
        known.status, known.attempts, known.worker, known.result, known.error = e.status, e.attempts, e.worker, e.result, e.error
