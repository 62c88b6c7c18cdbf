"""
Tracing: the W3C trace context a dispatch carried in its gRPC metadata (`traceparent`, `tracestate`)
reaches a Python handler as ctx.trace_parent and ctx.trace_state. The test server runs without an
OpenTelemetry SDK, so it records no spans and hands the context on exactly as it was sent.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
import pytest

import taskq
from conftest import ServerProcess
from taskq import TaskContext
from taskq._gen import task_queue_pb2
from taskq._gen.services import TaskQueueStub

TRACE_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[TaskQueueStub]:
    channel = grpc.insecure_channel(server.url.removeprefix("http://"))
    yield TaskQueueStub(channel)
    channel.close()


def test_the_handler_sees_the_trace_context_sent_with_the_dispatch(
    stub: TaskQueueStub, client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    seen: dict[str, tuple[str, str]] = {}
    lock = threading.Lock()

    @worker.task(types("traced"))
    def traced(ctx: TaskContext) -> object:
        with lock:
            seen[ctx.id] = (ctx.trace_parent, ctx.trace_state)
        return "ok"

    worker.start(timeout=20)
    metadata = (("traceparent", TRACE_PARENT), ("tracestate", TRACE_STATE))
    traced_id = stub.Dispatch(task_queue_pb2.DispatchRequest(type=types("traced")), metadata=metadata, timeout=20).task_id
    untraced_id = client.dispatch(types("traced")).id
    for task_id in (traced_id, untraced_id):
        assert client.handle(task_id).result(timeout=20) == "ok"
    assert seen[traced_id] == (TRACE_PARENT, TRACE_STATE)
    assert seen[untraced_id] == ("", "")
