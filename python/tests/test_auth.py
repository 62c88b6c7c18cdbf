"""Bearer tokens: a worker and a client with the right tokens work; a bad token ends the worker instead of retrying forever."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TOKENS, ServerProcess

import taskq
from taskq import TaskContext


def test_tokens_are_sent_and_a_refused_worker_gives_up(strict_server: ServerProcess, tmp_path: Path, types: Callable[[str], str]) -> None:
    worker = taskq.Worker(strict_server.url, TOKENS["worker"], storage_dir=tmp_path)

    @worker.task(types("hello"))
    def hello(ctx: TaskContext) -> object:
        return f"hello {ctx.params['name']}"

    with taskq.TaskClient(strict_server.url, TOKENS["client"]) as client, worker:
        worker.start(timeout=20)
        assert client.dispatch(types("hello"), {"name": "auth"}).result(timeout=20) == "hello auth"

    with taskq.TaskClient(strict_server.url) as anonymous, pytest.raises(taskq.TaskqError) as raised:
        anonymous.list_queues()
    assert raised.value.code == taskq.StatusCode.UNAUTHENTICATED

    refusals = [("not-a-known-token-at-all", taskq.StatusCode.UNAUTHENTICATED), (TOKENS["client"], taskq.StatusCode.PERMISSION_DENIED)]
    for token, code in refusals:
        events: list[str] = []
        refused = taskq.Worker(strict_server.url, token, storage_dir=tmp_path, on_event=lambda e, d: events.append(e))
        refused.register(types("hello"), hello)
        with pytest.raises(taskq.WorkerRefusedError) as raised:
            refused.start(timeout=20)
        assert raised.value.code == code
        assert raised.value.message.startswith("the server refused the worker: ")
        assert events == ["gave up"], "no second attempt"
        # start() raised once the worker had stopped: nothing of it runs on, and it cannot start again.
        with pytest.raises(taskq.TaskqError, match="worker already stopped"):
            refused.start(timeout=20)
        refused.stop()
