"""
Per-task temp directories under a worker's storage root: `<root>/<task id>/`. Each holds a marker file
with how long to keep the directory after its task finishes and, once an attempt has finished, when it
expires; an attempt that uses the directory again (a retry) clears that expiry while it runs. A
directory whose task never finished here (the worker crashed) expires its keep-time after the marker
was last written. Expired directories are deleted by remove_expired(), which the Worker
calls at start, hourly, and when the server's hourly taskq.temp-cleanup task reaches it.

The layout and the marker are the TypeScript SDK's (packages/sdk/src/internal/temp-dirs.ts), so
workers of both languages may share a storage root.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import grpc

from .errors import TaskqError, invalid

MARKER = ".taskq-temp.json"
# How long a task's temp directory is kept after the task finishes, unless set_temp_expiration says otherwise.
DEFAULT_TEMP_TTL_S = 3600.0
_TASK_ID = re.compile(r"^[\w.-]+$")


class TempDirs:
    def __init__(self, root: Path, now_ms: Callable[[], float] = lambda: time.time() * 1000) -> None:
        self.root = root
        self._now_ms = now_ms

    def create(self, task_id: str) -> Path:
        """
        The task's directory for a running attempt, created (with its marker) on first use. A directory
        an earlier attempt left (a retry on this machine) keeps its keep-time but no longer expires: its
        expiresAt goes back to null until this attempt ends, so that no cleanup, another worker's on the
        same root included, deletes it under the attempt. File system errors come as TaskqError.
        """
        with _file_errors():
            d = self._dir_of(task_id)
            d.mkdir(parents=True, exist_ok=True)
            marker = self._read(d)
            if marker is None:
                self._write(d, {"ttlMs": DEFAULT_TEMP_TTL_S * 1000, "expiresAt": None})
            elif marker.get("expiresAt") is not None:
                self._write(d, {**marker, "expiresAt": None})
            return d

    def set_ttl(self, task_id: str, seconds: float) -> None:
        """Keep the task's directory this long after the task finishes (instead of an hour)."""
        with _file_errors():
            d = self._dir_of(task_id)
            marker = self._read(d)
            if marker is None:
                raise TaskqError(grpc.StatusCode.FAILED_PRECONDITION, "set_temp_expiration: call temp_dir() first")
            self._write(d, {**marker, "ttlMs": seconds * 1000})

    def finished(self, task_id: str) -> None:
        """The task finished here: its directory, if it has one, now expires after its keep-time."""
        with _file_errors():
            d = self._dir_of(task_id)
            marker = self._read(d)
            if marker is not None:
                self._write(d, {**marker, "expiresAt": self._now_ms() + marker["ttlMs"]})

    def remove_expired(self, running: Collection[str] = ()) -> list[Path]:
        """Deletes expired directories, except those of `running` tasks; returns the paths deleted."""
        with _file_errors():
            try:
                names = sorted(os.listdir(self.root))
            except FileNotFoundError:
                return []
            removed = []
            for name in names:
                if name in running:
                    continue
                d = self.root / name
                marker = self._read(d)
                if marker is None:
                    continue  # not ours
                expires_at = marker.get("expiresAt")
                if expires_at is None:
                    expires_at = (d / MARKER).stat().st_mtime * 1000 + marker["ttlMs"]
                if expires_at > self._now_ms():
                    continue
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
            return removed

    def _dir_of(self, task_id: str) -> Path:
        if not _TASK_ID.match(task_id):
            raise invalid(f"not a task id: {task_id}")
        return self.root / task_id

    @staticmethod
    def _read(d: Path) -> dict[str, Any] | None:
        try:
            marker = json.loads((d / MARKER).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return marker if isinstance(marker, dict) and isinstance(marker.get("ttlMs"), (int, float)) else None

    @staticmethod
    def _write(d: Path, marker: dict[str, Any]) -> None:
        # Whole milliseconds as integers, as the TypeScript SDK writes them.
        marker = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in marker.items()}
        (d / MARKER).write_text(json.dumps(marker, separators=(",", ":")), "utf-8")


class _file_errors:
    """Turns an OSError into a TaskqError (INTERNAL), keeping it as the cause."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: object) -> None:
        if isinstance(err, OSError):
            raise TaskqError(grpc.StatusCode.INTERNAL, f"temp dir: {err}") from err
