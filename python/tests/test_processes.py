"""
Programs as their users run them: the examples (documentation that runs), immediate mode on the
command line, the conformance worker's start and graceful stop, and a worker stopped by SIGTERM
while it is still connecting.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PYTHON_DIR, REPO, ServerProcess
from helpers import Proc

import taskq

EXAMPLES = REPO / "examples" / "python"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture
def example_worker(server: ServerProcess, tmp_path: Path) -> Iterator[Proc]:
    proc = Proc([sys.executable, str(EXAMPLES / "worker.py")], env(TASKQ_URL=server.url, TMPDIR=str(tmp_path)))
    try:
        proc.wait_for(r"\[worker\] connected")
        yield proc
        assert proc.terminate() == 0, proc.output()
        assert "[worker] stopped" in proc.output()
    finally:
        proc.kill()


def test_the_example_client_sees_the_example_workers_log_live_and_both_results(server: ServerProcess, example_worker: Proc) -> None:
    client = Proc([sys.executable, str(EXAMPLES / "client.py")], env(TASKQ_URL=server.url))
    try:
        assert client.proc.wait(60) == 0, client.output()
    finally:
        client.kill()
    out = client.output()
    assert "dispatched report.generate as task" in out
    for i in range(1, 5):
        assert f"Section {i}/4 written" in out
    assert "progress = 100" in out
    assert 'result of task' in out and '{"pages": 16, "sections": 4}' in out
    assert '{"attempt": 3, "fetched": true} after 3 attempts' in out
    # Streamed while the task ran, not read back at the end.
    assert out.index("Section 4/4 written") < out.index("status: completed"), out


def test_immediate_mode_runs_one_handler_with_no_server(tmp_path: Path) -> None:
    run = Proc(
        [sys.executable, "-m", "taskq", "run", str(EXAMPLES / "worker.py"), "report.generate", "--sections=2", "--name=Local"],
        env(TMPDIR=str(tmp_path)),
    )
    assert run.proc.wait(30) == 0, run.output()
    assert run.output().splitlines() == [
        '[log] Generating report "Local" with 2 sections',
        "[log] Section 1/2 written",
        "[status] progress = 50",
        "[log] Section 2/2 written",
        "[status] progress = 100",
        "[log] Report complete",
        'result: {"sections":2,"pages":8}',
    ]


def test_immediate_mode_reports_failures_and_usage_errors(tmp_path: Path) -> None:
    module = tmp_path / "handlers.py"
    module.write_text(
        "import taskq\n"
        "worker = taskq.Worker()\n"
        "@worker.task('boom')\n"
        "def boom(ctx):\n"
        "    ctx.log(f\"got {ctx.params}\")\n"
        "    raise RuntimeError('it broke')\n"
        "@worker.task('temp')\n"
        "async def temp(ctx):\n"
        "    (ctx.temp_dir() / 'out.txt').write_text('hi')\n"
        "    return {'file': (ctx.temp_dir() / 'out.txt').read_text(), 'flag': ctx.params['flag']}\n"
    )
    failed = Proc([sys.executable, "-m", "taskq", "run", f"{module}:worker", "boom", "--n=3", "--s=text"], env(TMPDIR=str(tmp_path)))
    assert failed.proc.wait(30) == 1
    assert failed.output().splitlines() == ["[log] got {'n': 3, 's': 'text'}", "failed: it broke"]
    done = Proc([sys.executable, "-m", "taskq", "run", str(module), "temp", "--flag", "--json"], env(TMPDIR=str(tmp_path)))
    assert done.proc.wait(30) == 0, done.output()
    assert done.output() == '{"result":{"file":"hi","flag":true}}'
    unknown = Proc([sys.executable, "-m", "taskq", "run", str(module), "nope"], env())
    assert unknown.proc.wait(30) == 1
    assert "no handler registered for task type nope (registered: boom, temp)" in unknown.output()
    usage = Proc([sys.executable, "-m", "taskq", "run", str(module)], env())
    assert usage.proc.wait(30) == 2


def test_the_conformance_worker_says_ready_runs_tasks_and_stops_on_sigterm(server: ServerProcess, client: taskq.TaskClient) -> None:
    worker = Proc([sys.executable, str(PYTHON_DIR / "conformance_worker.py")], {**os.environ, "TASKQ_URL": server.url})
    try:
        worker.wait_for("^conformance worker ready$")
        assert client.dispatch("conformance.echo", {"n": 7, "s": "x"}).result(timeout=20) == {"n": 7, "s": "x"}
        context = client.dispatch("conformance.context", idempotency_key="py-conformance-smoke").result(timeout=20)
        assert isinstance(context, dict)
        assert (context["attempt"], context["type"], context["queue"], context["idempotency_key"]) == (
            1,
            "conformance.context",
            "default",
            "py-conformance-smoke",
        )
        assert worker.terminate() == 0, worker.output()
    finally:
        worker.kill()


def test_sigterm_while_run_is_still_connecting_stops_the_worker_gracefully(tmp_path: Path) -> None:
    # A port bound but not listening: connecting is refused there for as long as the test holds it.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        script = tmp_path / "connecting_worker.py"
        script.write_text(
            "import os, threading, time\n"
            "import taskq\n"
            "worker = taskq.Worker(os.environ['TASKQ_URL'], storage_dir=os.environ['TMPDIR'])\n"
            "worker.register('py.never', lambda ctx: None)\n"
            "def say_when_connecting():\n"
            "    while not any(t.name == 'taskq-worker' for t in threading.enumerate()):\n"
            "        time.sleep(0.01)\n"
            "    print('connecting', flush=True)\n"
            "threading.Thread(target=say_when_connecting, daemon=True).start()\n"
            "worker.run(grace=1)\n"
            "print('stopped', flush=True)\n"
        )
        worker = Proc([sys.executable, str(script)], env(TASKQ_URL=url, TMPDIR=str(tmp_path)))
        try:
            worker.wait_for("^connecting$")
            began = time.monotonic()
            # Without handlers installed yet, SIGTERM's default action would end the process with -15.
            assert worker.terminate(timeout=30) == 0, worker.output()
            took = time.monotonic() - began
        finally:
            worker.kill()
    assert worker.output().splitlines()[-1] == "stopped"
    # Far more than a graceful stop of a worker with nothing running needs, on any machine.
    assert took < 10, took
