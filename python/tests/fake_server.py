"""
A stand-in WorkerService on loopback, for what the real server does not do on demand: refuse a worker
after welcoming it, or answer a finish with a FinishAck error or a FinishRejected code. Each Connect
stream plays the next of the scripts it was given; streams past the last welcome the worker and wait
for it to leave. And a stand-in TaskQueue whose WatchTask says a task has finished while its Status
call does not answer (SlowStatusTaskQueue).

A script is a generator function of (the worker's messages, the call's context) that yields the
server's messages; `context.abort(code, text)` ends the stream with a status.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from taskq._gen import task_pb2, task_queue_pb2, worker_pb2
from taskq.types import duration

Script = Callable[[Iterator[worker_pb2.WorkerMessage], Any], Iterator[worker_pb2.ServerMessage]]


class FakeWorkerService:
    def __init__(self, scripts: list[Script]) -> None:
        self._scripts = scripts
        self._lock = threading.Lock()
        self.streams = 0
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8))
        connect = grpc.stream_stream_rpc_method_handler(
            self._connect,
            request_deserializer=worker_pb2.WorkerMessage.FromString,
            response_serializer=worker_pb2.ServerMessage.SerializeToString,
        )
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("taskq.v1.WorkerService", {"Connect": connect})])
        self.url = f"http://127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(0).wait()

    def _connect(self, requests: Iterator[worker_pb2.WorkerMessage], context: Any) -> Iterator[worker_pb2.ServerMessage]:
        with self._lock:
            n = self.streams
            self.streams += 1
        script = self._scripts[n] if n < len(self._scripts) else welcome_then_wait
        yield from script(requests, context)


def welcome() -> worker_pb2.ServerMessage:
    w = worker_pb2.Welcome(session_id="fake", server_id="fake", accepts_batches=True)
    w.heartbeat_interval.CopyFrom(duration(1))
    return worker_pb2.ServerMessage(welcome=w)


def messages(requests: Iterator[worker_pb2.WorkerMessage]) -> Iterator[worker_pb2.WorkerMessage]:
    """The worker's messages one by one, batches unpacked, until it half-closes (or the call ends)."""
    try:
        for m in requests:
            yield from (m.batch.messages if m.WhichOneof("message") == "batch" else [m])
    except grpc.RpcError:
        return


def welcome_then_wait(requests: Iterator[worker_pb2.WorkerMessage], context: Any) -> Iterator[worker_pb2.ServerMessage]:
    next(requests)  # the hello
    yield welcome()
    for _ in messages(requests):
        pass


def refuse(code: grpc.StatusCode) -> Script:
    """Ends the stream with `code` right after the hello, before any welcome."""

    def script(requests: Iterator[worker_pb2.WorkerMessage], context: Any) -> Iterator[worker_pb2.ServerMessage]:
        next(requests)
        context.abort(code, f"refused: {code.name}")
        yield from ()

    return script


def welcome_then_end(code: grpc.StatusCode) -> Script:
    """Welcomes the worker, then ends the stream with `code`."""

    def script(requests: Iterator[worker_pb2.WorkerMessage], context: Any) -> Iterator[worker_pb2.ServerMessage]:
        next(requests)
        yield welcome()
        context.abort(code, f"ended after the welcome: {code.name}")

    return script


class SlowStatusTaskQueue:
    """A TaskQueue whose WatchTask says at once that the task completed, and whose Status answers only once released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=4))
        handlers = {
            "WatchTask": grpc.unary_stream_rpc_method_handler(
                self._watch,
                request_deserializer=task_queue_pb2.WatchTaskRequest.FromString,
                response_serializer=task_queue_pb2.WatchTaskResponse.SerializeToString,
            ),
            "Status": grpc.unary_unary_rpc_method_handler(
                self._status,
                request_deserializer=task_queue_pb2.StatusRequest.FromString,
                response_serializer=task_queue_pb2.StatusResponse.SerializeToString,
            ),
        }
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("taskq.v1.TaskQueue", handlers)])
        self.url = f"http://127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def stop(self) -> None:
        self.release.set()
        self._server.stop(0).wait()

    @staticmethod
    def _task(task_id: str) -> task_pb2.Task:
        return task_pb2.Task(id=task_id, status=task_pb2.TASK_STATUS_COMPLETED)

    def _watch(self, request: task_queue_pb2.WatchTaskRequest, context: Any) -> Iterator[task_queue_pb2.WatchTaskResponse]:
        yield task_queue_pb2.WatchTaskResponse(snapshot=self._task(request.task_id))

    def _status(self, request: task_queue_pb2.StatusRequest, context: Any) -> task_queue_pb2.StatusResponse:
        self.release.wait(60)
        return task_queue_pb2.StatusResponse(task=self._task(request.task_id))
