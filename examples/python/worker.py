"""
An example worker process, the Python twin of examples/worker.ts (TASKQ_URL picks the server):

    PYTHONPATH=python python3 examples/python/worker.py

Its handlers, on the module-level `worker`, also run one at a time with no server (immediate mode):

    PYTHONPATH=python python3 -m taskq run examples/python/worker.py report.generate --sections=2

  report.generate  logs each step and reports progress, then returns a summary
  flaky.fetch      fails with a retryable error on its first two attempts, succeeds on the third
"""
from __future__ import annotations

import os

from taskq import DEFAULT_URL, RetryableError, TaskContext, Worker

url = os.environ.get("TASKQ_URL", DEFAULT_URL)

worker = Worker(
    url,
    name=f"example-worker:{os.getpid()}",
    concurrency=4,
    on_event=lambda event, detail: print(f"[worker] {event}", detail or "", flush=True),
)


@worker.task("report.generate")
def generate_report(ctx: TaskContext) -> dict[str, int]:
    sections = int(ctx.params.get("sections", 3))  # type: ignore[arg-type]
    ctx.log(f'Generating report "{ctx.params.get("name", "untitled")}" with {sections} sections')
    for i in range(1, sections + 1):
        ctx.sleep(0.15)  # stands for real work; raises TaskCancelled if the task is interrupted
        ctx.log(f"Section {i}/{sections} written")
        ctx.progress(round(i / sections * 100))
    ctx.log("Report complete")
    return {"sections": sections, "pages": sections * 4}


@worker.task("flaky.fetch")
def fetch(ctx: TaskContext) -> dict[str, object]:
    ctx.log(f"Fetching {ctx.params.get('url', 'https://example.invalid')} (attempt {ctx.attempt} of {ctx.max_attempts})")
    if ctx.attempt < 3:
        raise RetryableError(f"upstream timed out on attempt {ctx.attempt}")
    return {"fetched": True, "attempt": ctx.attempt}


if __name__ == "__main__":
    worker.start()
    print(f"[worker] running report.generate and flaky.fetch against {url}; Ctrl-C to stop", flush=True)
    # Until SIGTERM or Ctrl-C; then running tasks get 10 s to finish.
    worker.run(grace=10)
    print("[worker] stopped", flush=True)
