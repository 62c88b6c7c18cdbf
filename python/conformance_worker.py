#!/usr/bin/env python3
"""
The Python SDK's worker under test for the conformance harness: it registers exactly the conformance
task types, connects to TASKQ_URL (with TASKQ_TOKEN when set), prints "conformance worker ready" once
the server has welcomed it, and runs until SIGTERM, on which it stops gracefully and exits 0.

    TASKQ_URL=http://127.0.0.1:50051 python3 python/conformance_worker.py
"""
from __future__ import annotations

import logging
import os
import time

# Run as a script, this file's directory (python/, which holds the taskq package) comes first on the path.
from taskq import DEFAULT_URL, RetryableError, TaskContext, Worker

worker = Worker(
    os.environ.get("TASKQ_URL", DEFAULT_URL),
    token=os.environ.get("TASKQ_TOKEN") or None,
    name=f"conformance-python:{os.getpid()}",
)


@worker.task("conformance.echo")
def echo(ctx: TaskContext) -> object:
    return ctx.params


@worker.task("conformance.log")
def log_steps(ctx: TaskContext) -> object:
    steps = int(ctx.params.get("steps", 0))  # type: ignore[arg-type]
    for i in range(1, steps + 1):
        ctx.log(f"step {i}")
    return {"logged": steps}


@worker.task("conformance.progress")
def progress(ctx: TaskContext) -> object:
    for value in ctx.params.get("values", []):  # type: ignore[union-attr]
        ctx.progress(value)  # type: ignore[arg-type]
    ctx.set_status("phase", "done")
    return {}


@worker.task("conformance.fail")
def fail(ctx: TaskContext) -> object:
    raise Exception(str(ctx.params.get("message", "")))


@worker.task("conformance.retry")
def retry(ctx: TaskContext) -> object:
    times = int(ctx.params.get("times", 0))  # type: ignore[arg-type]
    if ctx.attempt <= times:
        raise RetryableError(f"retry {times}", delay=int(ctx.params.get("delay_ms", 0)) / 1000)  # type: ignore[arg-type]
    return {"attempt": ctx.attempt}


@worker.task("conformance.sleep")
def sleep(ctx: TaskContext) -> object:
    ms = ctx.params.get("ms", 0)
    ctx.sleep(float(ms) / 1000)  # type: ignore[arg-type]  # raises TaskCancelled when cancelled
    return {"slept": ms}


@worker.task("conformance.ignore_cancel")
def ignore_cancel(ctx: TaskContext) -> object:
    time.sleep(float(ctx.params.get("ms", 0)) / 1000)  # type: ignore[arg-type]
    return {"done": True}


@worker.task("conformance.timeout", timeout=0.3)
def timeout(ctx: TaskContext) -> object:
    ctx.sleep(60)
    return {}


@worker.task("conformance.large_result")
def large_result(ctx: TaskContext) -> object:
    return {"data": "x" * int(ctx.params.get("bytes", 0))}  # type: ignore[arg-type]


@worker.task("conformance.context")
def context(ctx: TaskContext) -> object:
    return {
        "attempt": ctx.attempt,
        "max_attempts": ctx.max_attempts,
        "idempotency_key": ctx.idempotency_key,
        "concurrency_key": ctx.concurrency_key,
        "type": ctx.type,
        "queue": ctx.queue,
        "id": ctx.id,
    }


if __name__ == "__main__":
    # What happens to the worker (connected, disconnected, rejections) goes to stderr, for the harness's worker.log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker.start()
    print("conformance worker ready", flush=True)
    worker.run()
