"""
The operator's calls against a real server: retry (a new task linked both ways, once), interrupt_many
and retry_many (a dry run that only counts, a filter by type, type prefix or ids, and an empty filter
refused), the audit log naming who acted, counts per status, and the sampled queue stats.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from conftest import TOKENS, ServerProcess, running_server
from helpers import wait_until

import taskq
from taskq import BulkResult, StatusCode, TaskContext, TaskFailedError, TaskFilter, TaskqError


def test_retry_runs_a_failed_task_again_as_a_new_task_linked_both_ways_and_only_once(
    client: taskq.TaskClient, make_worker: Callable[..., taskq.Worker], types: Callable[[str], str]
) -> None:
    worker = make_worker()
    runs: list[str] = []
    lock = threading.Lock()

    @worker.task(types("flaky"))
    def flaky(ctx: TaskContext) -> object:
        with lock:
            runs.append(ctx.id)
            if len(runs) == 1:
                raise ValueError("the disk was full")
        return {"n": ctx.params["n"]}

    worker.start(timeout=20)
    first = client.dispatch(types("flaky"), {"n": 7}, title="flaky one", priority=3, max_attempts=1)
    with pytest.raises(TaskFailedError) as failed:
        first.result(timeout=20)
    assert (failed.value.status, failed.value.task.error) == ("failed", "the disk was full")

    retry = client.retry(first.id)
    assert retry.created and retry.id != first.id
    assert retry.result(timeout=20) == {"n": 7}, "the retry runs with the same params"
    again = retry.status()
    assert (again.retry_of, again.retried_as) == (first.id, "")
    assert (again.type, again.title, again.priority, again.max_attempts) == (types("flaky"), "flaky one", 3, 1)
    old = first.status()
    assert (old.status, old.retried_as, old.retry_of) == ("failed", retry.id, "")

    # Idempotent: retrying the same task again (from either side) gives back that retry and queues nothing.
    for repeat in (client.retry(first.id), first.retry()):
        assert (repeat.id, repeat.created) == (retry.id, False)
    assert runs == [first.id, retry.id]

    # The retry COMPLETED: it is not retried.
    with pytest.raises(TaskqError) as refused:
        retry.retry()
    assert refused.value.code == StatusCode.FAILED_PRECONDITION, refused.value
    with pytest.raises(TaskqError) as missing:
        client.retry("999999999999")
    assert missing.value.code == StatusCode.NOT_FOUND, missing.value


def test_interrupt_many_counts_in_a_dry_run_then_interrupts(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    # No worker runs these types: the tasks stay pending until interrupted.
    handles = client.dispatch_batch([taskq.DispatchItem(types("idle")) for _ in range(3)])
    other = client.dispatch(types("other"))
    selected = TaskFilter(type=types("idle"))

    assert client.interrupt_many(selected, dry_run=True) == BulkResult(3, False)
    assert client.interrupt_many(selected, dry_run=True, limit=2) == BulkResult(2, True)
    assert client.interrupt_many(TaskFilter(type=types("idle"), statuses=["running"]), dry_run=True) == BulkResult(0, False)
    assert {h.status().status for h in handles} == {"pending"}, "a dry run changes nothing"

    assert client.interrupt_many(selected, reason="maintenance", limit=2) == BulkResult(2, True)
    assert client.interrupt_many(selected, reason="maintenance") == BulkResult(1, False)
    ended = [h.status() for h in handles]
    assert [(t.status, t.error) for t in ended] == [("canceled", "interrupted: maintenance")] * 3
    assert other.status().status == "pending", "a task the filter does not match is left alone"

    # A type prefix matches every type that starts with it: here, the one task left.
    assert client.interrupt_many(TaskFilter(type_prefix=types("")), dry_run=True) == BulkResult(1, False)
    assert client.interrupt_many(TaskFilter(type_prefix=types("")), reason="done") == BulkResult(1, False)
    assert other.status().status == "canceled"


def test_retry_many_retries_the_tasks_named_by_id_that_were_not_retried_yet(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    a, b, c = client.dispatch_batch([taskq.DispatchItem(types("idle"), {"i": i}) for i in range(3)])
    assert client.interrupt_many(TaskFilter(type=types("idle"))) == BulkResult(3, False)

    chosen = TaskFilter(ids=[a.id, c.id])
    assert client.retry_many(chosen, dry_run=True) == BulkResult(2, False)
    assert client.retry_many(chosen) == BulkResult(2, False)
    assert client.retry_many(chosen) == BulkResult(0, False), "tasks retried already are skipped"
    retried_as = {h.id: h.status().retried_as for h in (a, b, c)}
    assert retried_as[b.id] == "" and "" not in (retried_as[a.id], retried_as[c.id])
    for old in (a, c):
        new = client.handle(retried_as[old.id]).status()
        assert (new.status, new.retry_of, new.params) == ("pending", old.id, old.status().params)

    # Only failed, canceled and stuck tasks are retried: the pending retries are not.
    retries = [retried_as[h.id] for h in (a, c)]
    assert client.retry_many(TaskFilter(ids=retries), dry_run=True) == BulkResult(0, False)
    client.interrupt_many(TaskFilter(ids=retries))


def test_an_empty_or_malformed_filter_is_invalid_argument(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    handle = client.dispatch(types("idle"))
    calls: list[tuple[str, Callable[[], object]]] = [
        ("interrupt_many with an empty filter", lambda: client.interrupt_many(TaskFilter())),
        ("interrupt_many dry run with an empty filter", lambda: client.interrupt_many(TaskFilter(), dry_run=True)),
        ("retry_many with an empty filter", lambda: client.retry_many(TaskFilter())),
        ("retry_many with no ids", lambda: client.retry_many(TaskFilter(ids=[]))),
        ("a status retry_many does not take", lambda: client.retry_many(TaskFilter(statuses=["pending"]))),
        ("a status that is none", lambda: client.interrupt_many(TaskFilter(statuses=["done"]))),  # type: ignore[list-item]
        ("an origin that is none", lambda: client.interrupt_many(TaskFilter(origin="robot"))),  # type: ignore[arg-type]
        ("an id given bare, not in a list", lambda: client.interrupt_many(TaskFilter(ids=handle.id))),
        ("a limit of 0", lambda: client.interrupt_many(TaskFilter(type=types("idle")), limit=0)),
        ("a limit over the most", lambda: client.interrupt_many(TaskFilter(type=types("idle")), limit=10_001)),
    ]
    for what, call in calls:
        with pytest.raises(TaskqError) as err:
            call()
        assert err.value.code == StatusCode.INVALID_ARGUMENT, f"{what}: {err.value!r}"
    assert "at least one" in str(pytest.raises(TaskqError, client.retry_many, TaskFilter()).value)
    assert handle.status().status == "pending", "nothing was interrupted"
    handle.interrupt()


def test_the_audit_log_names_the_token_that_acted_and_pages_newest_first(strict_server: ServerProcess, types: Callable[[str], str]) -> None:
    with taskq.TaskClient(strict_server.url, TOKENS["admin"], call_timeout=30) as admin:
        a, b = admin.dispatch_batch([taskq.DispatchItem(types("audited")), taskq.DispatchItem(types("audited"))])
        selected = TaskFilter(type=types("audited"))
        assert admin.interrupt_many(selected, dry_run=True) == BulkResult(2, False)
        assert admin.interrupt_many(selected, reason="drain", limit=5) == BulkResult(2, False)
        retry = admin.retry(a.id)
        assert admin.retry_many(TaskFilter(type=types("audited"), statuses=["canceled"])) == BulkResult(1, False)

        page = admin.list_audit()
        # The server is shared with other tests: keep the entries of this test's tasks.
        mine = [e for e in page.entries if e.params.get("task_id") == a.id or types("audited") in str(e.params.get("filter"))]
        assert [(e.actor, e.action, e.affected, e.params) for e in mine] == [
            ("py-admin", "retry_many", 1, {"filter": {"type": types("audited"), "statuses": ["canceled"]}, "limit": 10_000}),
            ("py-admin", "retry", 1, {"task_id": a.id, "retry_id": retry.id}),
            ("py-admin", "interrupt_many", 2, {"filter": {"type": types("audited")}, "limit": 5, "reason": "drain"}),
        ], "the dry run is not recorded; integers stay ints"
        assert all(isinstance(e.params["limit"], int) for e in mine if "limit" in e.params)
        assert [e.time for e in mine] == sorted((e.time for e in mine), reverse=True), "newest first"

        first = admin.list_audit(page_size=1)
        second = admin.list_audit(page_size=1, page_token=first.next_page_token)
        assert [e.id for e in first.entries + second.entries] == [e.id for e in page.entries[:2]]
        with pytest.raises(TaskqError) as bad_size:
            admin.list_audit(page_size=0)
        assert bad_size.value.code == StatusCode.INVALID_ARGUMENT

        retried = b.status().retried_as
        admin.interrupt_many(TaskFilter(ids=[retry.id, retried]))

    # Retries, bulk actions and the audit log are an admin's: a client token is refused.
    with taskq.TaskClient(strict_server.url, TOKENS["client"], call_timeout=30) as plain:
        calls: list[Callable[[], object]] = [
            lambda: plain.retry(b.id),
            plain.list_audit,
            lambda: plain.interrupt_many(selected, dry_run=True),
        ]
        for call in calls:
            with pytest.raises(TaskqError) as denied:
                call()
            assert denied.value.code == StatusCode.PERMISSION_DENIED, denied.value


def test_count_tasks_counts_every_status(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    prefix = types("")
    handles = client.dispatch_batch([taskq.DispatchItem(types("a")), taskq.DispatchItem(types("a")), taskq.DispatchItem(types("b"))])
    handles[0].interrupt()

    counts = client.count_tasks(type_prefix=prefix)
    assert [c.status for c in counts] == list(taskq.TASK_STATUSES), "every status, in order, zeros included"
    assert {c.status: (c.count, c.more) for c in counts if c.count} == {"pending": (2, False), "canceled": (1, False)}
    assert all(not c.more for c in counts)
    pending = {c.status: c.count for c in client.count_tasks(type_prefix=types("b"), queue="default", origin="user")}["pending"]
    assert pending == 1
    assert sum(c.count for c in client.count_tasks(type_prefix=prefix, origin="system")) == 0
    assert sum(c.count for c in client.count_tasks(type_prefix=prefix, queue="scheduled")) == 0

    client.interrupt_many(TaskFilter(type_prefix=prefix))
    with pytest.raises(TaskqError) as err:
        client.count_tasks(origin="robot")  # type: ignore[arg-type]
    assert err.value.code == StatusCode.INVALID_ARGUMENT


# The sampling interval of the stats server: the least the server takes, so samples come every second.
# (The sampler reads each window as long behind the clock, so a finish is counted however late its
# sample is written; only a finish committed more than a second after its time would be missed.)
STATS_INTERVAL_MS = 1000


@pytest.fixture(scope="module")
def stats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own, sampling every second, so that its stats hold only this module's tasks."""
    yield from running_server(
        tmp_path_factory.mktemp("stats-server"),
        {"TASKQ_STATS_INTERVAL_MS": str(STATS_INTERVAL_MS), "TASKQ_BUILTIN_SCHEDULES": "off"},
    )


def test_get_stats_returns_each_queues_samples_oldest_first(stats_server: ServerProcess, types: Callable[[str], str]) -> None:
    with taskq.TaskClient(stats_server.url, call_timeout=30) as client:
        client.dispatch_batch([taskq.DispatchItem(types("idle")), taskq.DispatchItem(types("idle"))])

        def default_samples() -> list[taskq.StatsSample]:
            return client.get_stats(queue="default").samples

        wait_until("a sample with the two pending tasks", lambda: any(s.pending == 2 for s in default_samples()))
        assert client.interrupt_many(TaskFilter(type=types("idle"))) == BulkResult(2, False)
        wait_until("the two canceled tasks counted", lambda: sum(s.canceled for s in default_samples()) == 2)
        wait_until("a sample after them with nothing pending", lambda: default_samples()[-1].pending == 0)

        stats = client.get_stats(window=3600)
        assert stats.interval == STATS_INTERVAL_MS / 1000
        assert {s.queue for s in stats.samples} >= {"default", "scheduled"}, "every queue, empty ones included"
        times = [s.time for s in stats.samples]
        assert times == sorted(times), "oldest first"
        default = [s for s in stats.samples if s.queue == "default"]
        assert [(s.completed, s.failed, s.stuck, s.running) for s in default] == [(0, 0, 0, 0)] * len(default)
        assert all(s.time.tzinfo is not None for s in default)
        assert {s.queue for s in client.get_stats(queue="scheduled").samples} == {"scheduled"}

        for window in (0, -1, float("nan")):
            with pytest.raises(TaskqError) as err:
                client.get_stats(window=window)
            assert err.value.code == StatusCode.INVALID_ARGUMENT, window


def test_list_active_and_list_history_filter_by_type_prefix_and_queue(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    a, b = client.dispatch_batch([taskq.DispatchItem(types("x.one")), taskq.DispatchItem(types("y.two"))])
    prefix = types("x.")
    assert [t.id for t in client.list_active(type_prefix=prefix).tasks] == [a.id]
    assert [t.id for t in client.list_active(type_prefix=types(""), queue="default").tasks] == [a.id, b.id]
    client.interrupt_many(TaskFilter(type_prefix=types("")))
    assert [t.id for t in client.list_history(type_prefix=prefix).tasks] == [a.id]
    assert {t.id for t in client.list_history(type_prefix=types(""), queue="default").tasks} == {a.id, b.id}
    assert client.list_history(type_prefix=types(""), queue="scheduled").tasks == []


def test_a_malformed_trace_context_is_refused_before_anything_is_sent(client: taskq.TaskClient, types: Callable[[str], str]) -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    bad: list[dict[str, str]] = [
        {"trace_parent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"},
        {"trace_parent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
        {"trace_parent": good.upper()},
        {"trace_state": "vendor=1"},
        {"trace_parent": good, "trace_state": "vendor=\u00e9"},
    ]
    for options in bad:
        with pytest.raises(TaskqError) as err:
            client.dispatch(types("traced"), **options)  # type: ignore[arg-type]
        assert err.value.code == StatusCode.INVALID_ARGUMENT, options
        with pytest.raises(TaskqError):
            client.dispatch_batch([taskq.DispatchItem(types("traced"))], **options)
    assert client.list_active(type=types("traced")).tasks == []
    # A well-formed one is sent (that the server keeps it is the server's tests' to show).
    handle = client.dispatch(types("traced"), trace_parent=good, trace_state="vendor=1")
    [batched] = client.dispatch_batch([taskq.DispatchItem(types("traced"))], trace_parent=good)
    assert {t.id for t in client.list_active(type=types("traced")).tasks} == {handle.id, batched.id}
    client.interrupt_many(TaskFilter(type=types("traced")))
