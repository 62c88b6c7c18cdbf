"""
Lease validity (docs/worker-protocol.md §10): when the server's heartbeat acks stop coming (here a proxy
between worker and server holds all traffic), the worker stops its tasks once its last promise runs
out (cancel reason lease_lost), ends the stream with ABORTED and connects again; the server gives the
task to the new session and it runs again. The server here (strict_server) has the
short liveness timings the conformance harness uses: lease validity 4 s, heartbeats every second.
"""
from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from conftest import TOKENS, ServerProcess
from helpers import wait_until

import taskq
from taskq import TaskContext


class FreezableProxy:
    """A TCP proxy to one address whose traffic, both ways, can be held (freeze) and let go (thaw)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._flowing.set()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked in accept() and recv()
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def test_lapsed_leases_stop_the_task_and_the_worker_reconnects(strict_server: ServerProcess, tmp_path: Path) -> None:
    parts = urlsplit(strict_server.url)
    proxy = FreezableProxy(str(parts.hostname), int(parts.port or 0))
    events: list[tuple[str, dict[str, object]]] = []
    on_event = lambda event, detail: events.append((event, detail))  # noqa: E731
    worker = taskq.Worker(proxy.url, TOKENS["worker"], storage_dir=tmp_path, on_event=on_event)
    reasons: list[object] = []

    @worker.task("py.lapse")
    def hold(ctx: TaskContext) -> object:
        if ctx.attempt == 1:
            ctx.log("holding")
            ctx.cancelled.wait(60)
            reasons.append(ctx.cancel_reason)
            ctx.raise_if_cancelled()
        return {"attempt": ctx.attempt}

    client = taskq.TaskClient(strict_server.url, TOKENS["client"])
    try:
        worker.start(timeout=20)
        handle = client.dispatch("py.lapse")
        wait_until("the first attempt to run", lambda: len(handle.status().log) == 1)
        proxy.freeze()
        wait_until("the worker to stop its task", lambda: reasons == ["lease_lost"])
        wait_until(
            "the worker to end its stream",
            lambda: any(e == "disconnected" and d["code"] == "ABORTED" and "lapsed" in str(d["error"]) for e, d in events),
        )
        proxy.thaw()
        assert handle.result(timeout=30) == {"attempt": 2}
        assert sum(1 for e, _ in events if e == "connected") >= 2
    finally:
        worker.stop(grace=1)
        client.close()
        proxy.close()
