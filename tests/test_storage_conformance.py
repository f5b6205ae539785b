"""The Storage contract (DESIGN §7), run against every backend (`conformance.BACKENDS`):
starts, commits, leases, timers, retries, signals, fused commits. Timeouts, cancellation,
backoff, fencing and concurrent starts are in `test_storage_rules.py`.

Each backend is built on a VirtualClock so leases, timers and timeouts are driven without
waiting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mainspring import _core
from mainspring._protocol import (
    COMMAND_COMPLETE_WORKFLOW,
    COMMAND_START_TIMER,
    JOB_FIRE_TIMER,
    JOB_RESOLVE_ACTIVITY,
    JOB_SIGNAL,
)
from mainspring.errors import (
    StaleTaskError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from mainspring.storage import (
    ActivityTask,
    FusedCommits,
    Storage,
    VirtualClock,
    WorkflowDescription,
)
from mainspring.storage.base import fused_commits

from .conformance import (
    LEASE_MS,
    QUEUE,
    Driver,
    _kinds,
    _poll_activity_task,
    _poll_workflow_task,
    _schedule,
    list_runs,
)


async def test_start_describe_list_and_unique_ids(storage: Storage) -> None:
    await storage.start_workflow("w", "r1", "wf", QUEUE, b"1")
    with pytest.raises(WorkflowAlreadyStartedError):
        await storage.start_workflow("w", "r2", "wf", QUEUE, b"1")
    description = await storage.describe_workflow("w")
    assert (description.run_id, description.status, description.history_length) == (
        "r1",
        "RUNNING",
        1,
    )
    assert [run.workflow_id for run in await list_runs(storage)] == ["w"]
    with pytest.raises(WorkflowNotFoundError):
        await storage.describe_workflow("missing")


def _ids(runs: list[WorkflowDescription]) -> list[str]:
    return [run.workflow_id for run in runs]


async def test_describe_names_the_worker_that_holds_the_lease(
    storage: Storage, second_client: Storage, clock: VirtualClock
) -> None:
    # The holder is the identity of the store (process) that took the lease; another client
    # sees it too; nobody holds a task that is queued again, and a signal written by another
    # client while the lease stands leaves the holder as it is.
    await storage.start_workflow("held", "r", "wf", QUEUE, b"null")
    assert (await storage.describe_workflow("held")).lease_identity is None
    task = await _poll_workflow_task(storage)
    assert task is not None
    identity = storage.identity  # type: ignore[attr-defined]
    assert (await storage.describe_workflow("held")).lease_identity == identity
    await second_client.signal_workflow("held", "Nudge", b"null")
    assert (await second_client.describe_workflow("held")).lease_identity == identity
    await storage.fail_workflow_task(task, "let it go")
    assert (await second_client.describe_workflow("held")).lease_identity is None
    # The next lease, taken by the other client, names it.
    clock.advance(timedelta(seconds=2))  # past the failed task's backoff
    again = await _poll_workflow_task(second_client)
    assert again is not None
    other = second_client.identity  # type: ignore[attr-defined]
    assert (await storage.describe_workflow("held")).lease_identity == other


async def test_list_pages_through_the_runs_in_start_order(storage: Storage) -> None:
    empty = await storage.list_workflows(page_size=3)
    assert (empty.runs, empty.next_after_run_key) == ([], None)
    await storage.start_workflow("done", "done-r", "b", QUEUE, b"1")
    await Driver(storage).step([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    for number in range(7):
        workflow_type = "a" if number % 2 else "b"
        await storage.start_workflow(f"w{number}", f"w{number}-r", workflow_type, QUEUE, b"1")
    await storage.terminate_workflow("w1", "listed as terminated")
    await storage.terminate_workflow("w4", "listed as terminated")
    # The id is free again: its second run is listed too, where it started.
    await storage.start_workflow("w1", "w1-again", "a", QUEUE, b"1")

    # A full page says where the next one starts; the last one, that none follows.
    first = await storage.list_workflows(page_size=3)
    assert _ids(first.runs) == ["done", "w0", "w1"]
    assert first.next_after_run_key is not None
    second = await storage.list_workflows(after_run_key=first.next_after_run_key, page_size=3)
    assert _ids(second.runs) == ["w2", "w3", "w4"]
    assert second.next_after_run_key is not None
    third = await storage.list_workflows(after_run_key=second.next_after_run_key, page_size=3)
    assert [(run.workflow_id, run.run_id) for run in third.runs] == [
        ("w5", "w5-r"),
        ("w6", "w6-r"),
        ("w1", "w1-again"),
    ]
    last = await storage.list_workflows(after_run_key=third.next_after_run_key, page_size=3)
    assert (last.runs, last.next_after_run_key) == ([], None)
    assert _ids(await list_runs(storage, page_size=100)) == _ids(
        first.runs + second.runs + third.runs
    )

    # Filters apply before the page is cut, so a page of them holds only matching runs.
    assert _ids(await list_runs(storage, page_size=1, status="TERMINATED")) == ["w1", "w4"]
    assert _ids(await list_runs(storage, page_size=2, status="RUNNING")) == [
        "w0", "w2", "w3", "w5", "w6", "w1",
    ]  # fmt: skip
    assert _ids(await list_runs(storage, status="COMPLETED")) == ["done"]
    assert await list_runs(storage, status="FAILED") == []
    assert _ids(await list_runs(storage, page_size=2, workflow_type="a")) == [
        "w1", "w3", "w5", "w1",
    ]  # fmt: skip
    assert _ids(await list_runs(storage, page_size=1, status="RUNNING", workflow_type="a")) == [
        "w3",
        "w5",
        "w1",
    ]
    assert await list_runs(storage, workflow_type="missing") == []
    running = await storage.list_workflows(page_size=2, status="RUNNING")
    assert {run.status for run in running.runs} == {"RUNNING"}


async def test_a_run_started_between_pages_is_listed_after_the_runs_before_it(
    storage: Storage,
) -> None:
    for number in range(3):
        await storage.start_workflow(f"w{number}", f"r{number}", "wf", QUEUE, b"1")
    page = await storage.list_workflows(page_size=3)
    assert _ids(page.runs) == ["w0", "w1", "w2"]
    await storage.start_workflow("late", "late-r", "wf", QUEUE, b"1")
    await storage.terminate_workflow("w0", "closed after it was listed")
    rest = await storage.list_workflows(after_run_key=page.next_after_run_key, page_size=3)
    assert _ids(rest.runs) == ["late"]  # w0 is not listed again
    assert rest.next_after_run_key is None


async def test_a_workflow_task_commits_atomically_and_creates_its_work(storage: Storage) -> None:
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    await driver.step([_schedule(1), (COMMAND_START_TIMER, 1, 60_000)])
    assert await _kinds(storage, "w") == [
        "WorkflowStarted",
        "WorkflowTaskCompleted",
        "ActivityScheduled",
        "TimerStarted",
    ]
    attempt = await _poll_activity_task(storage)
    assert attempt is not None and (attempt.activity_type, attempt.attempt) == ("act", 1)
    await storage.complete_activity_task(attempt, b'"done"')
    jobs = await driver.step([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    assert [job[0] for job in jobs] == [JOB_RESOLVE_ACTIVITY]
    description = await storage.describe_workflow("w")
    assert description.status == "COMPLETED"
    assert _core.run_outcome(await storage.wait_closed("w", "r", timeout=1)) == (
        "COMPLETED",
        b"1",
    )


async def test_one_outstanding_task_per_run_and_mid_task_signals_go_to_the_next(
    storage: Storage,
) -> None:
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    task = await driver.lease()
    jobs = await driver.advance(task)
    await storage.signal_workflow("w", "go", b"1")
    assert await _poll_workflow_task(storage) is None
    await driver.commit(task, [])
    jobs = await driver.step([])
    assert [(job[0], job[1]) for job in jobs] == [(JOB_SIGNAL, "go")]


async def test_an_expired_lease_is_handed_out_again_and_fences_its_old_holder(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    stale = await driver.lease()
    await driver.advance(stale)
    clock.advance(timedelta(milliseconds=LEASE_MS + 1))
    fresh = await _poll_workflow_task(storage)
    assert fresh is not None and fresh.token != stale.token
    outcome = driver.runs["r"].complete([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    with pytest.raises(StaleTaskError):
        await storage.complete_workflow_task(stale, outcome)
    assert (await storage.describe_workflow("w")).status == "RUNNING"


async def test_timers_fire_when_due(storage: Storage, clock: VirtualClock) -> None:
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    await driver.step([(COMMAND_START_TIMER, 1, 3_600_000)])
    clock.advance(timedelta(minutes=59))
    assert await _poll_workflow_task(storage) is None
    clock.advance(timedelta(minutes=1))
    jobs = await driver.step([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    assert jobs == [(JOB_FIRE_TIMER, 1)]


async def test_failed_attempts_retry_with_backoff_and_stale_attempts_are_fenced(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    await driver.step([_schedule(1, initial=500, attempts=2, heartbeat=1_000)])
    first = await _poll_activity_task(storage)
    assert first is not None
    await storage.heartbeat_activity_task(first, b'"half"')
    failure = ("boom", "ValueError", False, b"null", "", None, None)
    await storage.fail_activity_task(first, failure)
    with pytest.raises(StaleTaskError):
        await storage.heartbeat_activity_task(first, b"null")
    assert await _poll_activity_task(storage) is None
    clock.advance(timedelta(milliseconds=500))
    second = await _poll_activity_task(storage)
    assert second is not None
    assert (second.attempt, second.heartbeat_details) == (2, b'"half"')
    await storage.fail_activity_task(second, failure)
    assert (await _kinds(storage, "w"))[-1] == "ActivityFailed"


async def test_signal_cancel_and_terminate(storage: Storage) -> None:
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    await storage.signal_workflow("w", "s", b"1")
    await storage.request_cancel_workflow("w", "please")
    await storage.terminate_workflow("w", "stop")
    assert (await storage.describe_workflow("w")).status == "TERMINATED"
    assert await _kinds(storage, "w") == [
        "WorkflowStarted",
        "WorkflowSignaled",
        "WorkflowCancelRequested",
        "WorkflowTerminated",
    ]
    with pytest.raises(WorkflowNotRunningError):
        await storage.signal_workflow("w", "s", b"1")
    assert await _poll_workflow_task(storage) is None
    closing = await storage.wait_closed("w", "r", timeout=1)
    assert _core.run_outcome(closing) == ("TERMINATED", "stop")


async def test_wait_closed_times_out_while_running(storage: Storage) -> None:
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    with pytest.raises(TimeoutError):
        await storage.wait_closed("w", "r", timeout=0.01)


def _fused(storage: Storage) -> FusedCommits:
    fused = fused_commits(storage)
    if fused is None:
        pytest.skip("this storage does not fuse commits")
    return fused


async def _fusable_attempt(
    storage: Storage, driver: Driver
) -> tuple[ActivityTask, _core.WorkflowRun, int]:
    """A run whose first task scheduled one activity, that attempt leased, and the run as a
    worker's cached instance holds it (fed its own command events): `(attempt, run, length)`."""
    _fused(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    task = await driver.lease()
    await driver.advance(task)
    outcome = driver.runs["r"].complete([_schedule(1)])
    committed = await storage.complete_workflow_task(task, outcome)
    run = driver.runs["r"]
    assert committed.history_length == 3 and committed.appended is not None
    run.add_events(committed.appended)
    attempt = await _poll_activity_task(storage)
    assert attempt is not None and attempt.scheduled_event_id == 3
    return attempt, run, 3


def _fused_outcome(
    storage: Storage, run: _core.WorkflowRun, attempt: ActivityTask, length: int
) -> tuple[bytes, bytes]:
    """Feeds the run the attempt's result and completes the workflow: `(event, outcome)`."""
    event = _core.encode_inbound_row(
        length + 1, storage.now_ms(), "ActivityCompleted", (3, b'"done"', attempt.attempt)
    )
    run.add_events(_core.join_rows([event]))
    activation = run.next_activation(storage.now_ms())
    assert activation is not None and [job[0] for job in activation[2]] == [JOB_RESOLVE_ACTIVITY]
    outcome = run.complete([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    assert outcome is not None
    return event, outcome


async def test_a_fused_commit_records_the_result_and_the_task_it_woke(storage: Storage) -> None:
    attempt, run, length = await _fusable_attempt(storage, Driver(storage))
    event, outcome = _fused_outcome(storage, run, attempt, length)
    committed = await _fused(storage).complete_activity_with_workflow_task(
        attempt, b'"done"', event, length, outcome
    )
    assert committed is not None and committed.history_length == 6
    assert await _kinds(storage, "w") == [
        "WorkflowStarted",
        "WorkflowTaskCompleted",
        "ActivityScheduled",
        "ActivityCompleted",
        "WorkflowTaskCompleted",
        "WorkflowCompleted",
    ]
    assert _core.run_outcome(await storage.wait_closed("w", "r", timeout=1)) == ("COMPLETED", b"1")
    assert _core.validate_history(await storage.read_history("w", "r")) == 6
    # The attempt is over: neither path may record it again.
    with pytest.raises(StaleTaskError):
        await storage.complete_activity_task(attempt, b'"again"')


async def test_a_fused_commit_on_a_run_that_moved_on_records_only_the_result(
    storage: Storage,
) -> None:
    attempt, run, length = await _fusable_attempt(storage, Driver(storage))
    await storage.signal_workflow("w", "s", b"1")  # lands while the activity runs
    # ... and another worker's task takes it in, replaying the run from its start.
    task = await Driver(storage).lease()
    other = _core.WorkflowRun()
    other.add_events(await storage.read_history("w", "r", 1))
    replayed = other.next_activation(storage.now_ms())
    assert replayed is not None and replayed[0]
    other.complete([_schedule(1)])
    live = other.next_activation(storage.now_ms())
    assert live is not None and not live[0]
    await storage.complete_workflow_task(task, other.complete([]))
    event, outcome = _fused_outcome(storage, run, attempt, length)
    assert (
        await _fused(storage).complete_activity_with_workflow_task(
            attempt, b'"done"', event, length, outcome
        )
        is None
    )
    kinds = await _kinds(storage, "w")
    assert kinds[3:] == ["WorkflowSignaled", "WorkflowTaskCompleted", "ActivityCompleted"]
    # The result queued the run's next task; the run's own history is whole.
    woken = await _poll_workflow_task(storage)
    assert woken is not None and woken.history_length == 6
    assert _core.validate_history(await storage.read_history("w", "r")) == 6


async def test_a_fused_commit_of_a_stale_attempt_records_nothing(storage: Storage) -> None:
    attempt, run, length = await _fusable_attempt(storage, Driver(storage))
    await storage.complete_activity_task(attempt, b'"first"')
    event, outcome = _fused_outcome(storage, run, attempt, length)
    with pytest.raises(StaleTaskError):
        await _fused(storage).complete_activity_with_workflow_task(
            attempt, b'"done"', event, length, outcome
        )
    assert (await _kinds(storage, "w"))[3:] == ["ActivityCompleted"]


async def test_a_task_is_recorded_at_the_time_its_code_saw(
    storage: Storage, clock: VirtualClock
) -> None:
    # Replay hands workflow code the recorded time of its task as "now": it must be the time
    # the live code saw, not when the storage got round to committing.
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    driver = Driver(storage)
    task = await driver.lease()
    seen_at = storage.now_ms()
    await driver.advance(task)
    clock.advance(timedelta(seconds=3))
    await driver.commit(task, [(COMMAND_COMPLETE_WORKFLOW, b"1")])
    history = await storage.read_history("w", "r", 1)
    assert [(kind, at) for _, at, kind in _core.history_outline(history)][1:] == [
        ("WorkflowTaskCompleted", seen_at),
        ("WorkflowCompleted", seen_at),
    ]
    replayed = _core.WorkflowRun()
    replayed.add_events(history)
    activation = replayed.next_activation(storage.now_ms())
    assert activation is not None and activation[:2] == (True, seen_at)


def _first_task(
    storage: Storage, workflow_id: str, commands: list[tuple[Any, ...]], run_id: str = "r"
) -> tuple[bytes, bytes]:
    """A worker's first task of a run it has not recorded yet: `(started event, outcome)`."""
    started = _core.encode_inbound_row(
        1, storage.now_ms(), "WorkflowStarted", ("wf", workflow_id, run_id, QUEUE, b"null")
    )
    run = _core.WorkflowRun()
    run.add_events(_core.join_rows([started]))
    activation = run.next_activation(storage.now_ms())
    assert activation is not None and not activation[0]
    outcome = run.complete(commands)
    assert outcome is not None
    return started, outcome


async def test_a_fused_start_records_the_run_with_its_first_task(storage: Storage) -> None:
    fused = _fused(storage)
    started, outcome = _first_task(storage, "w", [_schedule(1)])
    committed = await fused.start_workflow_with_first_task(
        "w", "r", "wf", QUEUE, b"null", started, outcome
    )
    assert committed.history_length == 3
    assert await _kinds(storage, "w") == [
        "WorkflowStarted",
        "WorkflowTaskCompleted",
        "ActivityScheduled",
    ]
    description = await storage.describe_workflow("w")
    assert (description.status, description.history_length) == ("RUNNING", 3)
    # The first task is done: no poll hands it out; the activity it scheduled is queued.
    assert await _poll_workflow_task(storage) is None
    attempt = await _poll_activity_task(storage)
    assert attempt is not None and attempt.scheduled_event_id == 3
    # Ids stay unique among running runs, and a refused start records nothing.
    again, outcome = _first_task(storage, "w", [(COMMAND_COMPLETE_WORKFLOW, b"1")], "r2")
    with pytest.raises(WorkflowAlreadyStartedError):
        await fused.start_workflow_with_first_task("w", "r2", "wf", QUEUE, b"null", again, outcome)
    assert (await storage.describe_workflow("w")).run_id == "r"


async def test_a_fused_start_whose_first_task_completes_closes_the_run(storage: Storage) -> None:
    fused = _fused(storage)
    started, outcome = _first_task(storage, "w", [(COMMAND_COMPLETE_WORKFLOW, b"7")])
    await fused.start_workflow_with_first_task("w", "r", "wf", QUEUE, b"null", started, outcome)
    assert _core.run_outcome(await storage.wait_closed("w", "r", timeout=1)) == ("COMPLETED", b"7")
    assert _core.validate_history(await storage.read_history("w", "r")) == 3
