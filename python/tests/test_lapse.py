"""
Lease validity (docs/worker-protocol.md §10): when the server's heartbeat acks stop coming (here a proxy
between worker and server holds all traffic), the worker stops its tasks once its last promise runs
out (cancel reason lease_lost), ends the stream with ABORTED and connects again; the server gives the
task to the new session and it runs again. The server here (strict_server) has the
short liveness timings the conformance harness uses: lease validity 4 s, heartbeats every second.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from conftest import TOKENS, ServerProcess
from helpers import FreezableProxy, wait_until

import taskq
from taskq import TaskContext


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
