"""Task temp directories: made on demand, kept for their expiry after the task, deleted by the built-in taskq.temp-cleanup task."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import taskq
from taskq import TaskContext
from taskq._temp_dirs import MARKER, TempDirs


def test_expired_directories_go_when_the_cleanup_task_reaches_the_worker(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str], tmp_path: Path
) -> None:
    storage = tmp_path / "tasks"
    worker = make_worker(storage_dir=storage)

    @worker.task(types("files"))
    def files(ctx: TaskContext) -> object:
        d = ctx.temp_dir()
        (d / "data.txt").write_text("scratch")
        if ctx.params.get("keep") is False:
            ctx.set_temp_expiration(0)
        return str(d)

    worker.start(timeout=20)
    expiring = Path(str(client.dispatch(types("files"), {"keep": False}).result(timeout=20)))
    kept = Path(str(client.dispatch(types("files"), {"keep": True}).result(timeout=20)))
    assert expiring.parent == storage and (expiring / "data.txt").read_text() == "scratch"
    # Dispatched by hand here; the server dispatches it hourly, to one of the workers that declare it.
    assert client.dispatch(taskq.TEMP_CLEANUP_TYPE, queue="scheduled").result(timeout=20) == {"removed": 1}
    assert not expiring.exists()
    assert (kept / "data.txt").exists(), "kept for an hour after its task"


def test_markers_are_the_typescript_sdks_and_unfinished_tasks_expire_from_their_markers_time(tmp_path: Path) -> None:
    now = [1_000_000.0]
    dirs = TempDirs(tmp_path, now_ms=lambda: now[0])
    running = dirs.create("41")
    finished = dirs.create("42")
    dirs.set_ttl("42", 10)
    dirs.finished("42")
    assert (finished / MARKER).read_text() == '{"ttlMs":10000,"expiresAt":1010000}'
    assert dirs.remove_expired() == []
    now[0] += 10_000
    assert dirs.remove_expired(running={"41"}) == [finished]
    # A task that never finished here (a crash) expires its keep-time after its marker was written.
    now[0] = (running / MARKER).stat().st_mtime * 1000 + taskq.DEFAULT_TEMP_TTL_S * 1000
    assert dirs.remove_expired() == [running]


def test_a_retry_that_uses_its_directory_again_keeps_it_from_another_workers_cleanup(tmp_path: Path) -> None:
    now = [1_000_000.0]
    mine, theirs = TempDirs(tmp_path, now_ms=lambda: now[0]), TempDirs(tmp_path, now_ms=lambda: now[0])
    d = mine.create("43")
    mine.set_ttl("43", 10)
    mine.finished("43")  # attempt 1 ended: the directory expires in 10 s
    now[0] += 5_000
    assert mine.create("43") == d  # attempt 2, on this worker, uses it again
    assert (d / MARKER).read_text() == '{"ttlMs":10000,"expiresAt":null}', "running again: no expiry, the keep-time kept"
    now[0] += 10_000  # past attempt 1's expiry; the marker was written only now, so its keep-time has not run out
    assert theirs.remove_expired() == [], "another worker on the same root does not know attempt 2 runs"
    mine.finished("43")
    assert (d / MARKER).read_text() == '{"ttlMs":10000,"expiresAt":1025000}'
