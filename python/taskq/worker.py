"""
Worker: register handlers by task type, start, and the worker holds one stream to the server, running
up to `concurrency` tasks at once. A handler's return value is the task's result (one over 1 MiB as
JSON fails the attempt as retryable); a raised RetryableError asks for another attempt; TaskSnoozed
(ctx.snooze) puts the task back to wait without spending the attempt; any other exception fails the
task. Plain functions run in a thread pool of `concurrency` threads, which costs more CPU per task
(README.md); `async def` handlers run on the worker's own event loop (they must not block it: that
loop also carries the stream's heartbeats). Interrupts, timeouts and the like reach a handler through
its context (context.py).

The stream reconnects with backoff and jitter when it breaks (_reconnect.py). A bad token, a refused
hello, or a server that is not taskq, before the server ever welcomed the worker, ends the worker
instead (retrying cannot help): start() or run() raises WorkerRefusedError. stop() lets running
handlers finish first; leases that still come meanwhile are declined, so their attempts do not count.

Threads: start() runs the worker's event loop on a thread of its own ("taskq-worker"); everything
about the stream happens there (_session.py). Handlers report from any thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import grpc

from ._connection import DEFAULT_URL, TlsOptions, auth_metadata, open_aio_channel, target_of
from ._gen.services import WorkerServiceStub
from ._json import JsonValue, to_value
from ._lease_runner import LeaseRunner
from ._reconnect import ReconnectBackoff, refused_for_good
from ._session import HelloInfo, StreamSession, TaskTypeInfo
from ._temp_dirs import TempDirs
from .context import TaskContext
from .errors import CancelReason, TaskqError, WorkerRefusedError

DEFAULT_CONCURRENCY = 10
# A worker's pause before connecting again after its stream broke: the first, doubling up to the last (seconds),
# each drawn from the upper half of its step.
DEFAULT_RECONNECT = (0.1, 5.0)
DEFAULT_STOP_GRACE_S = 30.0
# The built-in hourly task the server schedules; every SDK worker handles it for its own storage root.
TEMP_CLEANUP_TYPE = "taskq.temp-cleanup"
# How often the worker deletes expired temp directories by itself (besides at start and on TEMP_CLEANUP_TYPE tasks).
_TEMP_CLEANUP_INTERVAL_S = 3600.0
# How long stop() waits, once handlers are done (or were told to stop), for them, and then for the answers to
# the last finishes and the server's trailers.
_STOP_WAIT_S = 5.0
# How often run() looks whether a signal came (its handler takes no lock, so it cannot wake run() itself).
_SIGNAL_POLL_S = 0.1

Handler = Callable[[TaskContext], Any]
H = TypeVar("H", bound=Handler)
log = logging.getLogger("taskq.worker")
# A library's logger stays silent until the application configures logging.
logging.getLogger("taskq").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class _Registration:
    fn: Handler
    is_async: bool
    declared: TaskTypeInfo


class Worker:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        tls: TlsOptions | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        name: str | None = None,
        queues: Iterable[str] = (),
        storage_dir: str | os.PathLike[str] | None = None,
        reconnect: tuple[float, float] = DEFAULT_RECONNECT,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        """
        `name` is shown as the task's worker (default host:pid); `queues` limits the queues it takes
        tasks from (default all); `storage_dir` holds tasks' temp directories (default
        <tempdir>/taskq-tasks); `on_event(event, detail)` hears what happens to the worker ("connected",
        "disconnected", "draining", "lease declined", "finish rejected", ...), which also goes to the
        "taskq.worker" logger. `reconnect` is (first pause, cap) in seconds.
        """
        if concurrency < 1:
            raise TaskqError(grpc.StatusCode.INVALID_ARGUMENT, f"concurrency: {concurrency} is not 1 or more")
        target_of(url)  # a bad URL is refused here, not later on the worker's thread
        self._url, self._tls, self._metadata = url, tls, auth_metadata(token)
        self._concurrency = concurrency
        self._name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._queues = list(queues)
        self._backoff = ReconnectBackoff(*reconnect)
        self._on_event = on_event
        self._temp = TempDirs(Path(storage_dir) if storage_dir else Path(tempfile.gettempdir()) / "taskq-tasks")
        self._handlers: dict[str, _Registration] = {}
        self._state: Literal["idle", "running", "stopping", "stopped"] = "idle"
        self._fatal: TaskqError | None = None
        self._welcomed = False  # by any session: from then on, the worker never gives up
        self._started = threading.Event()  # welcomed once, or given up
        self._done = threading.Event()  # the loop thread has ended
        self._immediate_runs = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._session: StreamSession | None = None
        self._runner: LeaseRunner | None = None
        self._stop_task: asyncio.Task[None] | None = None

    # Registration.

    def task(
        self, type: str, *, timeout: float | None = None, schedule: str | None = None, time_zone: str | None = None
    ) -> Callable[[H], H]:
        """
        Decorator registering a handler for `type`. `timeout` (seconds) applies to tasks of the type
        dispatched without one; `schedule`, a 5-field cron expression (in `time_zone`, default UTC),
        makes the server run the type on that schedule.
        """

        def register(fn: H) -> H:
            self.register(type, fn, timeout=timeout, schedule=schedule, time_zone=time_zone)
            return fn

        return register

    def register(
        self, type: str, handler: Handler, *, timeout: float | None = None, schedule: str | None = None, time_zone: str | None = None
    ) -> None:
        if self._state != "idle":
            raise TaskqError(grpc.StatusCode.FAILED_PRECONDITION, "register handlers before start()")
        declared = TaskTypeInfo(type, timeout, schedule, time_zone)
        self._handlers[type] = _Registration(handler, inspect.iscoroutinefunction(handler), declared)

    @property
    def running(self) -> int:
        """How many handlers run now."""
        return self._runner.running if self._runner else 0

    # Life cycle.

    def start(self, timeout: float | None = None) -> None:
        """
        Connects and starts taking tasks; returns once the server has welcomed the worker. Raises
        WorkerRefusedError when the server refused the worker (a bad token, a refused hello), once the
        worker has stopped, and TaskqError DEADLINE_EXCEEDED when `timeout` seconds pass without a
        welcome (the worker is stopped then). Other failures to connect are retried until then.
        """
        self._launch()
        if not self._started.wait(timeout):
            self.stop(0)
            raise TaskqError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no welcome from the server at {self._url} within {timeout:g} s")
        if self._fatal is not None:
            self._done.wait()  # nothing of the worker is left running
            raise self._fatal

    def run(self, grace: float = DEFAULT_STOP_GRACE_S) -> None:
        """
        Starts the worker if start() was not called, then runs until SIGTERM or SIGINT (from the main
        thread) or until stop() is called elsewhere, and stops gracefully: running handlers get `grace`
        seconds to finish. The signals are heard from the moment run() is called, while the worker is
        still connecting too. A second signal acts as usual (SIGINT raises KeyboardInterrupt). Raises
        what ended the worker, if it gave up (WorkerRefusedError when the server refused it).
        """
        previous: dict[signal.Signals, Any] = {}
        # Set by the handler with no lock taken: a signal handler runs between any two bytecodes of the main
        # thread, which may hold an Event's lock just then.
        signalled = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal signalled
            signalled = True
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            if self._state == "idle":
                self._launch()  # no waiting for the welcome: a signal now stops the worker as it connects
            while not signalled and not self._done.wait(_SIGNAL_POLL_S):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if signalled:
            self._emit("stopping", signal=True)
            self.stop(grace)
        self._done.wait()
        if self._fatal is not None:
            raise self._fatal

    def stop(self, grace: float = DEFAULT_STOP_GRACE_S) -> None:
        """
        Stops taking tasks, lets running handlers finish (up to `grace` seconds, then tells them to stop
        with cancel reason worker_stopping), and closes. Call it from any thread but a handler's.
        """
        if self._state == "idle":
            self._state = "stopped"
            return
        if self._loop is not None and threading.current_thread().name == "taskq-worker":
            raise TaskqError(grpc.StatusCode.FAILED_PRECONDITION, "stop() inside the worker's own loop would wait for itself")
        if self._state == "running":
            self._state = "stopping"
            # Read after the state changed: a loop not there yet sees "stopping" before it ever connects.
            loop = self._loop
            if loop is not None and not self._done.is_set():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._begin_stop, grace)
        self._done.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _launch(self) -> None:
        """Starts the loop thread, which connects (and connects again) until the worker stops or gives up."""
        if not self._handlers:
            raise TaskqError(grpc.StatusCode.FAILED_PRECONDITION, "register at least one handler before start()")
        if self._state != "idle":
            raise TaskqError(grpc.StatusCode.FAILED_PRECONDITION, f"worker already {self._state}")
        if TEMP_CLEANUP_TYPE not in self._handlers:
            self._handlers[TEMP_CLEANUP_TYPE] = _Registration(self._temp_cleanup, True, TaskTypeInfo(TEMP_CLEANUP_TYPE))
        self._state = "running"
        threading.Thread(target=self._thread_main, name="taskq-worker", daemon=True).start()

    # The loop thread.

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # a bug here must not leave start() or stop() waiting forever
            self._fatal = self._fatal or TaskqError(grpc.StatusCode.INTERNAL, f"the worker's loop failed: {err!r}")
            log.exception("the worker's loop failed")
        finally:
            self._state = "stopped"
            self._done.set()
            self._started.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        channel = open_aio_channel(self._url, self._tls)
        executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="taskq-handler")
        self._runner = LeaseRunner(loop, executor, self._temp, {t: (r.fn, r.is_async) for t, r in self._handlers.items()}, self._emit)
        stub = WorkerServiceStub(channel)
        cleanup = loop.create_task(self._clean_temp_dirs_hourly())
        self._connect_task = loop.create_task(self._connect_loop(channel, stub))
        try:
            await self._connect_task
        except asyncio.CancelledError:
            pass
        finally:
            cleanup.cancel()
            self._runner.abort_all("worker_stopping")
            await channel.close()
            # Let the channel and its calls go now, on this loop, rather than at the interpreter's exit.
            self._session = None
            self._connect_task = None
            # Handlers that ignored every cancellation keep their threads; the loop does not wait for them.
            executor.shutdown(wait=False, cancel_futures=True)

    async def _connect_loop(self, channel: grpc.aio.Channel, stub: WorkerServiceStub) -> None:
        hello = HelloInfo(self._name, self._concurrency, [r.declared for r in self._handlers.values()], self._queues)
        assert self._runner is not None
        while self._state == "running":
            session = StreamSession(channel, stub.Connect, self._metadata, hello, _Hooks(self, self._runner))
            self._session = session
            error: TaskqError | None = None
            try:
                await session.run()
            except TaskqError as err:
                error = err
            # The server gives this session's leases back to the queue: stop the handlers still holding them.
            self._runner.abort_session(session, "lease_lost")
            if error is not None and refused_for_good(error.code, self._welcomed):
                self._fatal = WorkerRefusedError(error.code, f"the server refused the worker: {error.message}")
                self._fatal.__cause__ = error.__cause__
                self._emit("gave up", logging.WARNING, code=error.code_name, error=error.message)
                self._started.set()
                return
            if self._state != "running":
                return
            self._emit("disconnected", logging.WARNING, code=error.code_name if error else "OK", error=error.message if error else "")
            if session.welcomed:
                self._backoff.reset()
            await asyncio.sleep(self._backoff.next_pause())

    def _begin_stop(self, grace: float) -> None:
        # The coroutine is made here, on the loop: one made elsewhere for a loop that then closed would never be awaited.
        self._stop_task = asyncio.get_running_loop().create_task(self._stop(grace))

    async def _stop(self, grace: float) -> None:
        session, connect_task = self._session, self._connect_task
        if session is None or connect_task is None or session.mode in ("connecting", "ended"):
            if connect_task is not None:
                connect_task.cancel()
            return
        session.drain()
        self._emit("draining", running=session.running_count)
        assert self._runner is not None
        try:
            await asyncio.wait_for(session.wait_idle(), grace)
        except TimeoutError:
            self._runner.abort_session(session, "worker_stopping")
            try:
                await asyncio.wait_for(session.wait_idle(), _STOP_WAIT_S)
            except TimeoutError:
                # Handlers that ignore cancellation: leave without their finishes; their tasks go back to the queue.
                self._emit("handlers did not stop", logging.WARNING, running=session.running_count)
        # Leases the server sent before it answered the last finishes arrive before those answers, and are declined.
        try:
            await asyncio.wait_for(session.wait_answered(), _STOP_WAIT_S)
        except TimeoutError:
            self._emit("finishes unanswered", logging.WARNING)
        # Half-closed, the stream ends once the server has handled what was sent.
        session.half_close()
        try:
            await asyncio.wait_for(asyncio.shield(connect_task), _STOP_WAIT_S)
        except (TimeoutError, asyncio.CancelledError):
            connect_task.cancel()

    async def _temp_cleanup(self, ctx: TaskContext) -> JsonValue:
        return {"removed": len(await self._remove_expired_temp_dirs())}

    async def _remove_expired_temp_dirs(self) -> list[Path]:
        running = self._runner.running_task_ids() if self._runner else set()
        return await asyncio.get_running_loop().run_in_executor(None, self._temp.remove_expired, running)

    async def _clean_temp_dirs_hourly(self) -> None:
        # Directories that expired while the worker was down go now; then hourly.
        while True:
            try:
                await self._remove_expired_temp_dirs()
            except TaskqError as err:
                self._emit("temp dir cleanup failed", error=err.message)
            await asyncio.sleep(_TEMP_CLEANUP_INTERVAL_S)

    def _emit(self, event: str, level: int = logging.INFO, **detail: Any) -> None:
        log.log(level, "%s %s", event, detail)
        if self._on_event is not None:
            try:
                self._on_event(event, detail)
            except Exception:
                log.exception("on_event failed")

    # Immediate mode.

    def run_immediate(self, type: str, params: Mapping[str, Any] | None = None, *, report: Callable[[str], None] = print) -> JsonValue:
        """
        Runs a registered handler here and now, with no server: log steps and status values go to
        `report` as lines ("[log] ...", "[status] key = value"); no timeout applies; a temp directory
        works as usual. Returns the handler's result. Ctrl-C raises KeyboardInterrupt in the handler,
        as in any Python program.
        """
        from ._immediate import run_handler

        reg = self._handlers.get(type)
        if reg is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise TaskqError(grpc.StatusCode.NOT_FOUND, f"no handler registered for task type {type} (registered: {known})")
        task_id = f"immediate-{os.getpid()}-{next(self._immediate_runs)}"
        result: JsonValue = run_handler(reg.fn, reg.is_async, task_id, type, dict(params or {}), self._temp, report)
        to_value(result, "result")
        return result


class _Hooks:
    """What a stream session tells the worker."""

    def __init__(self, worker: Worker, runner: LeaseRunner) -> None:
        self._worker = worker
        self._runner = runner

    def run(self, lease: Any, session: StreamSession) -> Any:
        return self._runner.run(lease, session)

    def cancel(self, lease_token: str, reason: CancelReason) -> None:
        self._runner.cancel(lease_token, reason)

    def lapsed(self, session: StreamSession) -> None:
        self._runner.abort_session(session, "lease_lost")

    def note(self, event: str, level: int = logging.INFO, **detail: Any) -> None:
        self._worker._emit(event, level, **detail)

    def opened(self, session_id: str) -> None:
        self._worker._welcomed = True
        self._worker._emit("connected", session_id=session_id)
        self._worker._started.set()
