"""
A benchmark worker process on the Python SDK, the twin of bench/taskq-worker.ts: a Worker whose handler
does nothing but report when it started and returned (wall-clock ms), in its result. BENCH_URL,
BENCH_CONCURRENCY. Prints "ready" once the server has welcomed it; stops on SIGTERM, letting running
handlers finish for up to 2 s, as the TypeScript one does.

It runs the repository's python/taskq (not an installed copy), with the interpreter bench/lib.ts picks.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from taskq import TaskContext, Worker  # noqa: E402

worker = Worker(
    os.environ["BENCH_URL"],
    concurrency=int(os.environ.get("BENCH_CONCURRENCY", "100")),
    name=f"bench-python-{os.getpid()}",
)


# An async handler runs on the worker's event loop, where the stream is; a plain function would go to a
# thread pool of `concurrency` threads and back, which costs more CPU per task.
@worker.task("bench.noop")
async def noop(ctx: TaskContext) -> dict[str, float]:
    started_at = time.time() * 1000
    return {"startedAt": started_at, "returnedAt": time.time() * 1000}


if __name__ == "__main__":
    worker.start()
    print("ready", flush=True)
    worker.run(grace=2)
