"""
Immediate mode: run one handler here and now, with no server (Worker.run_immediate), and the command
line over it:

    python3 -m taskq run <module>[:<attribute>] <type> [--key=value]... [--json]

<module> is an importable module name or a path to a .py file; <attribute> names its Worker, found
among the module's attributes when left out. Each --key=value becomes a param: the value read as JSON
when it parses ("3", "true", '{"a": 1}'), else the text itself; a bare --key is true. Log steps and
status values are printed as they come, then "result: <json>" (with --json, only {"result": ...} on
stdout and the rest on stderr). Exit status: 0 done, 1 the handler failed, 2 a usage error.
"""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._json import JsonObject, JsonValue, dumps
from ._temp_dirs import TempDirs
from .context import TaskContext, describe

if TYPE_CHECKING:
    from .worker import Worker

USAGE = "usage: python3 -m taskq run <module>[:<worker>] <type> [--key=value]... [--json]"


class UsageError(Exception):
    pass


class _PrintReporter:
    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report

    def log(self, message: str) -> None:
        self._report(f"[log] {message}")

    def set_status(self, key: str, value: JsonValue) -> None:
        self._report(f"[status] {key} = {dumps(value)}")

    def extend_deadline(self, seconds: float) -> None:
        pass  # no timeout applies here


def run_handler(
    fn: Callable[[TaskContext], Any],
    is_async: bool,
    task_id: str,
    type: str,
    params: JsonObject,
    temp: TempDirs,
    report: Callable[[str], None],
) -> Any:
    ctx = TaskContext(
        id=task_id,
        type=type,
        queue="",
        params=params,
        title="",
        attempt=1,
        max_attempts=1,
        idempotency_key="",
        concurrency_key="",
        reporter=_PrintReporter(report),
        temp_dirs=temp,
    )
    try:
        return asyncio.run(fn(ctx)) if is_async else fn(ctx)
    finally:
        ctx._close()
        if ctx._used_temp_dir:
            temp.finished(task_id)


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] != "run":
        print(f"unknown command {args[0]}\n{USAGE}", file=sys.stderr)
        return 2
    as_json = "--json" in args
    args = [a for a in args[1:] if a != "--json"]
    try:
        if len(args) < 2:
            raise UsageError("run: expected <module> <type>")
        target, task_type, pairs = args[0], args[1], args[2:]
        params = parse_params(pairs)
        worker = load_worker(target)
    except UsageError as err:
        print(f"{err}\n{USAGE}", file=sys.stderr)
        return 2
    out = sys.stderr if as_json else sys.stdout

    def report(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        result = worker.run_immediate(task_type, params, report=report)
    except Exception as err:
        print(f"failed: {describe(err)}", file=sys.stderr)
        return 1
    print(dumps({"result": result}) if as_json else f"result: {dumps(result)}", flush=True)
    return 0


def parse_params(pairs: Sequence[str]) -> JsonObject:
    params: JsonObject = {}
    for pair in pairs:
        if not pair.startswith("--") or len(pair) < 3:
            raise UsageError(f"run: {pair}: expected --key=value")
        key, eq, raw = pair[2:].partition("=")
        if not key:
            raise UsageError(f"run: {pair}: expected --key=value")
        params[key] = param_value(raw) if eq else True
    return params


def param_value(raw: str) -> JsonValue:
    """"3" → 3, "true" → True, '{"a":1}' → dict, anything else stays a string."""
    try:
        value: JsonValue = json.loads(raw)
        return value
    except ValueError:
        return raw


def load_worker(target: str) -> Worker:
    from .worker import Worker

    module_name, _, attribute = target.partition(":")
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name).resolve()
        if not path.is_file():
            raise UsageError(f"run: {module_name}: no such file")
        # The file's directory first on the path, as `python3 file.py` would have it, so its own imports work.
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"run: {module_name}: cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, "")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise UsageError(f"run: cannot import {module_name}: {err}") from err
    if attribute:
        worker = getattr(module, attribute, None)
        if not isinstance(worker, Worker):
            raise UsageError(f"run: {module_name} has no Worker named {attribute}")
        return worker
    workers = [v for v in vars(module).values() if isinstance(v, Worker)]
    if len(workers) != 1:
        found = "no Worker" if not workers else f"{len(workers)} Workers (name one: {module_name}:<name>)"
        raise UsageError(f"run: {module_name} has {found}")
    return workers[0]
