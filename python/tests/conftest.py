"""
Fixtures: one real taskq server for the whole run, on a fresh database of its own (created with psql on
TASKQ_TEST_DATABASE_URL, dropped at the end), started from the built server
(packages/server/bin/taskq-server.js) on a port of the system's choosing; a client; and workers that
are stopped when their test ends. Each test uses task types of its own (`types`), so tasks of one test
never reach another's handlers.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent
sys.path.insert(0, str(PYTHON_DIR))

import taskq  # noqa: E402

SERVER_BIN = REPO / "packages" / "server" / "bin" / "taskq-server.js"
ADMIN_URL = os.environ.get("TASKQ_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LISTENING = re.compile(r"taskq listening on (http://[\d.]+:\d+)")


def psql(sql: str) -> None:
    """Runs one statement on the admin database; waits (up to 30 s) while Postgres has no connection to spare."""
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(["psql", ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True, text=True)
        if done.returncode == 0:
            return
        if "too many clients" not in done.stderr or time.monotonic() > deadline:
            raise RuntimeError(f"psql {sql!r}: {done.stderr.strip()}")
        time.sleep(0.5)


class ServerProcess:
    """The taskq server under test: started, stopped with SIGTERM, and started again on the same port and database."""

    def __init__(self, database_url: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.extra_env = env or {}
        self.log_path = log_path
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        port = urlsplit(self.url).port if self.url else 0
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "TASKQ_HOST": "127.0.0.1",
            "TASKQ_PORT": str(port),
            # info: the "taskq listening on" line, which says the port, is logged at info.
            "TASKQ_LOG_LEVEL": "info",
            # A short drain: the restart test stops the server with a task running.
            "TASKQ_SHUTDOWN_GRACE_MS": "1000",
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            ["node", str(SERVER_BIN)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
        )
        listening = threading.Event()
        proc, log_path = self.proc, self.log_path

        def pump() -> None:  # keeps the pipe drained for the server's whole life
            assert proc.stdout is not None
            with log_path.open("a") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    m = LISTENING.search(line)
                    if m and not listening.is_set():
                        self.url = m.group(1)
                        listening.set()
            listening.set()

        threading.Thread(target=pump, daemon=True).start()
        if not listening.wait(START_TIMEOUT_S) or proc.poll() is not None or not self.url:
            raise RuntimeError(f"the taskq server did not start; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(STOP_TIMEOUT_S)


def running_server(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A server on a database of its own, for as long as the generator is not closed; the database goes with it."""
    if not (REPO / "packages/server/dist/main.js").exists():
        pytest.exit("packages/server/dist is missing: run `npm run build` first", returncode=2)
    name = f"taskq_py_{secrets.token_hex(6)}"
    psql(f"create database {name}")
    parts = urlsplit(ADMIN_URL)
    srv = ServerProcess(urlunsplit(parts._replace(path=f"/{name}")), log_dir / "server.log", env)
    try:
        srv.start()
        yield srv
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        psql(f"drop database if exists {name} with (force)")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("server"))


# The tokens of strict_server, by role.
TOKENS = {"client": "py-client-token-0123456789", "worker": "py-worker-token-0123456789", "admin": "py-admin-token-0123456789"}


@pytest.fixture(scope="session")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """
    A second server, stricter than `server`: bearer tokens required (TOKENS), and the short liveness
    timings the conformance harness uses (TASKQ_STALE_CHECK_MS=10000: leases valid 4 s, heartbeats
    every second, silence ends a session after 5 s).
    """
    log_dir = tmp_path_factory.mktemp("strict-server")
    config = log_dir / "taskq.json"
    tokens = [{"name": f"py-{role}", "role": role, "token": token} for role, token in TOKENS.items()]
    config.write_text(json.dumps({"auth": {"tokens": tokens}}))
    yield from running_server(log_dir, {"TASKQ_STALE_CHECK_MS": "10000", "TASKQ_CONFIG": str(config)})


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> Iterator[taskq.TaskClient]:
    with taskq.TaskClient(server.url, call_timeout=30) as c:
        yield c


@pytest.fixture
def make_worker(server: ServerProcess, tmp_path: Path) -> Iterator[Callable[..., taskq.Worker]]:
    """Workers made here are stopped when the test ends (running handlers get a second)."""
    made: list[taskq.Worker] = []

    def make(**options: Any) -> taskq.Worker:
        options.setdefault("storage_dir", tmp_path / "storage")
        worker = taskq.Worker(server.url, **options)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop(grace=1)


@pytest.fixture
def types(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """A task type name unique to this test: types("echo") → "py.<test>.<random>.echo"."""
    prefix = f"py.{re.sub(r'[^A-Za-z0-9]+', '-', request.node.name)[:60]}.{secrets.token_hex(3)}"
    return lambda name: f"{prefix}.{name}"


