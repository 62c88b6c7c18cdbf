"""
An example client, the Python twin of examples/client.ts (TASKQ_URL picks the server):

    PYTHONPATH=python python3 examples/python/client.py

It dispatches a report, prints its log live as the worker writes it, prints the result, then runs a
task that fails twice before it succeeds.
"""
from __future__ import annotations

import json
import os

from taskq import DEFAULT_URL, LogEvent, SnapshotEvent, StatusEvent, StatusValueEvent, TaskClient

url = os.environ.get("TASKQ_URL", DEFAULT_URL)

with TaskClient(url) as client:
    report = client.dispatch(
        "report.generate",
        {"name": "Quarterly numbers", "sections": 4},
        title="Quarterly report",
        initiator="example-client",
    )
    print(f"dispatched report.generate as task {report.id}", flush=True)

    for event in report.watch():
        if isinstance(event, SnapshotEvent):
            print(f"  status: {event.task.status}")
            for step in event.task.log:
                print(f"  log #{step.seq}: {step.message}")
        elif isinstance(event, LogEvent):
            print(f"  log #{event.step.seq}: {event.step.message}")
        elif isinstance(event, StatusValueEvent):
            print(f"  {event.key} = {json.dumps(event.value)}")
        elif isinstance(event, StatusEvent):
            print(f"  status: {event.status}", flush=True)
    print(f"result of task {report.id}: {json.dumps(report.result(), sort_keys=True)}")

    flaky = client.dispatch("flaky.fetch", {"url": "https://example.invalid/data"}, retry_delay=0.3)
    print(f"dispatched flaky.fetch as task {flaky.id}")
    outcome = flaky.result()
    print(f"result of task {flaky.id}: {json.dumps(outcome, sort_keys=True)} after {flaky.status().attempts} attempts")
