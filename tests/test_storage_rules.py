"""The rules every store applies the same way (they live once, in `rust/core/src/rules`), run
against every backend: the four activity timeouts, cancellation of activities and workflows,
workflow-task and activity backoff, lease expiry and the fencing of a stale worker, and
duplicate starts from two clients at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from mainspring import _core
from mainspring._protocol import (
    COMMAND_CANCEL_WORKFLOW,
    COMMAND_COMPLETE_WORKFLOW,
    COMMAND_REQUEST_CANCEL_ACTIVITY,
    COMMAND_START_TIMER,
    JOB_CANCEL_WORKFLOW,
    JOB_RESOLVE_ACTIVITY,
    RESOLUTION_CANCELED,
    RESOLUTION_TIMED_OUT,
)
from mainspring.errors import StaleTaskError, WorkflowAlreadyStartedError
from mainspring.storage import Storage, VirtualClock
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

FAILURE = ("boom", "ValueError", False, b"null", "", None, None)


async def _started(storage: Storage, commands: list[tuple[Any, ...]]) -> Driver:
    """A run whose first task issued `commands`."""
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    await driver.step(commands)
    return driver


def _resolution(jobs: list[tuple[Any, ...]]) -> tuple[int, int, str | None]:
    """`(kind, attempt, timeout type)` of the one activity resolution among `jobs`."""
    (job,) = [job for job in jobs if job[0] == JOB_RESOLVE_ACTIVITY]
    _, _, attempt, kind, _, timeout_type = job
    return kind, attempt, timeout_type


async def _history(storage: Storage) -> bytes:
    return await storage.read_history("w", "r", 1)


# The four activity timeouts.


async def test_schedule_to_start_times_out_a_waiting_activity_and_is_not_retried(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = await _started(storage, [_schedule(1, schedule_to_start=1_000)])
    clock.advance(timedelta(milliseconds=999))
    assert await _poll_workflow_task(storage) is None
    clock.advance(timedelta(milliseconds=1))
    jobs = await driver.step([])
    assert _resolution(jobs) == (RESOLUTION_TIMED_OUT, 1, "schedule_to_start")
    assert (await _kinds(storage, "w"))[-2:] == ["ActivityTimedOut", "WorkflowTaskCompleted"]
    assert await _poll_activity_task(storage) is None


async def test_start_to_close_retries_the_attempt_and_refuses_the_late_one(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = await _started(storage, [_schedule(1, start_to_close=1_000, initial=500, attempts=2)])
    first = await _poll_activity_task(storage)
    assert first is not None and first.deadline_ms == storage.now_ms() + 1_000
    clock.advance(timedelta(milliseconds=1_001))
    assert await _poll_activity_task(storage) is None  # timed out; retried after 500 ms
    recorded = await _history(storage)
    with pytest.raises(StaleTaskError):
        await storage.complete_activity_task(first, b'"late"')
    assert await _history(storage) == recorded  # the late result changed nothing
    clock.advance(timedelta(milliseconds=500))
    second = await _poll_activity_task(storage)
    assert second is not None and second.attempt == 2
    clock.advance(timedelta(milliseconds=1_001))
    jobs = await driver.step([])
    assert _resolution(jobs) == (RESOLUTION_TIMED_OUT, 2, "start_to_close")


async def test_an_attempt_is_over_at_its_deadline_before_any_tick(
    storage: Storage, clock: VirtualClock
) -> None:
    await _started(storage, [_schedule(1, start_to_close=1_000)])
    attempt = await _poll_activity_task(storage)
    assert attempt is not None
    clock.advance(timedelta(milliseconds=1_000))
    # No poll has applied the timeout yet; the result is refused all the same.
    with pytest.raises(StaleTaskError):
        await storage.complete_activity_task(attempt, b'"on the deadline"')
    with pytest.raises(StaleTaskError):
        await storage.heartbeat_activity_task(attempt, b"null")


async def test_a_missed_heartbeat_times_out_the_attempt(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = await _started(storage, [_schedule(1, heartbeat=200, attempts=1)])
    attempt = await _poll_activity_task(storage)
    assert attempt is not None and attempt.heartbeat_timeout_ms == 200
    clock.advance(timedelta(milliseconds=150))
    await storage.heartbeat_activity_task(attempt, b'"alive"')  # the deadline moves to 350
    clock.advance(timedelta(milliseconds=199))
    assert await _poll_workflow_task(storage) is None
    clock.advance(timedelta(milliseconds=1))
    jobs = await driver.step([])
    assert _resolution(jobs) == (RESOLUTION_TIMED_OUT, 1, "heartbeat")
    with pytest.raises(StaleTaskError):
        await storage.heartbeat_activity_task(attempt, b'"too late"')


async def test_schedule_to_close_bounds_every_attempt_together(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = await _started(
        storage, [_schedule(1, schedule_to_close=2_000, start_to_close=1_500, initial=100)]
    )
    first = await _poll_activity_task(storage)
    assert first is not None
    clock.advance(timedelta(milliseconds=1_501))
    assert await _poll_activity_task(storage) is None  # timed out; retried 100 ms from now
    clock.advance(timedelta(milliseconds=100))
    second = await _poll_activity_task(storage)
    assert second is not None and second.attempt == 2
    # Its own start-to-close would end later: the whole activity's deadline comes first.
    assert second.deadline_ms == first.scheduled_ms + 2_000
    clock.advance(timedelta(milliseconds=399))
    jobs = await driver.step([])
    assert _resolution(jobs) == (RESOLUTION_TIMED_OUT, 2, "schedule_to_close")


# Cancellation.


async def test_cancelling_an_activity_resolves_it_at_once_and_fences_its_attempt(
    storage: Storage,
) -> None:
    driver = await _started(storage, [_schedule(1)])
    attempt = await _poll_activity_task(storage)
    assert attempt is not None
    await storage.signal_workflow("w", "stop", b"null")  # a task for the workflow to cancel in
    await driver.step([(COMMAND_REQUEST_CANCEL_ACTIVITY, 1)])
    kinds = await _kinds(storage, "w")
    assert kinds[-2:] == ["ActivityCancelRequested", "ActivityCanceled"]
    jobs = await driver.step([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    assert _resolution(jobs) == (RESOLUTION_CANCELED, 1, None)
    # The running attempt learns through its heartbeat; its late result is refused.
    with pytest.raises(StaleTaskError):
        await storage.heartbeat_activity_task(attempt, b"null")
    with pytest.raises(StaleTaskError):
        await storage.complete_activity_task(attempt, b'"late"')
    assert (await storage.describe_workflow("w")).status == "COMPLETED"


async def test_cancelling_a_workflow_is_recorded_once_and_its_code_decides(
    storage: Storage,
) -> None:
    driver = await _started(storage, [_schedule(1), (COMMAND_START_TIMER, 1, 60_000)])
    await storage.request_cancel_workflow("w", "no longer needed")
    await storage.request_cancel_workflow("w", "asked twice")
    assert (await _kinds(storage, "w")).count("WorkflowCancelRequested") == 1
    jobs = await driver.step([(COMMAND_CANCEL_WORKFLOW, b"null")])
    assert [job for job in jobs if job[0] == JOB_CANCEL_WORKFLOW] == [
        (JOB_CANCEL_WORKFLOW, "no longer needed")
    ]
    assert (await storage.describe_workflow("w")).status == "CANCELED"
    # Nothing of a closed run is handed out.
    assert await _poll_activity_task(storage) is None
    assert await _poll_workflow_task(storage) is None


# Backoff.


async def test_failed_workflow_tasks_back_off_and_describe_says_why(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    delays = []
    for _ in range(3):
        task = await driver.lease()
        await storage.fail_workflow_task(task, "NameError: name 'x' is not defined")
        waited = 0
        while await _poll_workflow_task(storage) is None:
            clock.advance(timedelta(milliseconds=250))
            waited += 250
        delays.append(waited)
        # That poll leased it: let the lease lapse so the next round leases it again.
        clock.advance(timedelta(milliseconds=LEASE_MS + 1))
    assert delays == [1_000, 2_000, 4_000]
    description = await storage.describe_workflow("w")
    assert description.last_task_failure == "NameError: name 'x' is not defined"
    await driver.step([(COMMAND_COMPLETE_WORKFLOW, b"1")])  # a task that works resets it
    assert (await storage.describe_workflow("w")).last_task_failure is None


async def test_failed_attempts_back_off_by_the_policy(
    storage: Storage, clock: VirtualClock
) -> None:
    await _started(storage, [_schedule(1, initial=500, attempts=4)])
    attempt = await _poll_activity_task(storage)
    waits = []
    for expected_attempt in (1, 2, 3):
        assert attempt is not None and attempt.attempt == expected_attempt
        await storage.fail_activity_task(attempt, FAILURE)
        waited = 0
        while (attempt := await _poll_activity_task(storage)) is None:
            clock.advance(timedelta(milliseconds=100))
            waited += 100
        waits.append(waited)
    assert waits == [500, 1_000, 2_000]  # initial x coefficient^(attempt - 1)
    assert attempt.attempt == 4 and attempt.heartbeat_details == b""


# Leases and fencing.


async def test_a_worker_whose_lease_lapsed_cannot_commit_and_changes_nothing(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    stale = await driver.lease()
    await driver.advance(stale)
    clock.advance(timedelta(milliseconds=LEASE_MS + 1))
    fresh = await _poll_workflow_task(storage)
    assert fresh is not None and fresh.token != stale.token
    before = await _history(storage)
    outcome = driver.runs["r"].complete([_schedule(1), (COMMAND_START_TIMER, 1, 1_000)])
    with pytest.raises(StaleTaskError):
        await storage.complete_workflow_task(stale, outcome)
    with pytest.raises(StaleTaskError):
        await storage.fail_workflow_task(stale, "too late")
    assert await _history(storage) == before
    assert await _poll_activity_task(storage) is None  # its activity was never recorded
    description = await storage.describe_workflow("w")
    assert (description.status, description.last_task_failure) == ("RUNNING", None)
    # The new holder goes on.
    other = Driver(storage)
    await other.advance(fresh)
    await other.commit(fresh, [(COMMAND_COMPLETE_WORKFLOW, b"1")])
    assert (await storage.describe_workflow("w")).status == "COMPLETED"


async def test_a_lease_holds_until_its_deadline_and_lapses_at_it(
    storage: Storage, clock: VirtualClock
) -> None:
    driver = Driver(storage)
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    task = await driver.lease()
    await driver.advance(task)
    clock.advance(timedelta(milliseconds=LEASE_MS - 1))
    assert await _poll_workflow_task(storage) is None  # still held
    outcome = driver.runs["r"].complete([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    clock.advance(timedelta(milliseconds=1))  # at the deadline: due, as every deadline is
    with pytest.raises(StaleTaskError):
        await storage.complete_workflow_task(task, outcome)
    again = await _poll_workflow_task(storage)
    assert again is not None and again.token != task.token


# Concurrent clients.


async def test_duplicate_starts_from_two_clients_at_once_record_one_run(
    storage: Storage, second_client: Storage
) -> None:
    for round_ in range(3):
        workflow_id = f"w-{round_}"
        outcomes = await asyncio.gather(
            storage.start_workflow(workflow_id, f"{workflow_id}-a", "wf", QUEUE, b"1"),
            second_client.start_workflow(workflow_id, f"{workflow_id}-b", "wf", QUEUE, b"2"),
            return_exceptions=True,
        )
        refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        assert len(refused) == 1 and isinstance(refused[0], WorkflowAlreadyStartedError)
    runs = await list_runs(storage)
    assert sorted(run.workflow_id for run in runs) == ["w-0", "w-1", "w-2"]
    assert [run.workflow_id for run in await list_runs(second_client)] == [
        run.workflow_id for run in runs
    ]


async def test_a_fused_start_and_a_plain_start_of_one_id_at_once_record_one_run(
    storage: Storage, second_client: Storage
) -> None:
    fused = fused_commits(storage)
    if fused is None:
        pytest.skip("this storage does not fuse commits")
    started = _core.encode_inbound_row(
        1, storage.now_ms(), "WorkflowStarted", ("wf", "w", "fused", QUEUE, b"null")
    )
    run = _core.WorkflowRun()
    run.add_events(_core.join_rows([started]))
    assert run.next_activation(storage.now_ms()) is not None
    outcome = run.complete([(COMMAND_COMPLETE_WORKFLOW, b"1")])
    assert outcome is not None
    outcomes = await asyncio.gather(
        fused.start_workflow_with_first_task("w", "fused", "wf", QUEUE, b"null", started, outcome),
        second_client.start_workflow("w", "plain", "wf", QUEUE, b"null"),
        return_exceptions=True,
    )
    refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    runs = await list_runs(storage)
    if refused:
        # The plain start came first: the fused one, whose first task would close its run at
        # once, is refused all the same (the run it would record is open while inserted).
        assert isinstance(refused[0], WorkflowAlreadyStartedError)
        assert [run.run_id for run in runs] == ["plain"]
    else:
        # The fused start came first and closed its run: the id was free again. (In either
        # key order: a database draws keys as rows are inserted, not as they commit.) The
        # workflow id names the open run, whatever the keys.
        assert sorted(run.run_id for run in runs) == ["fused", "plain"]
        assert (await storage.describe_workflow("w")).run_id == "plain"


async def test_pollers_side_by_side_lease_a_task_only_with_the_timer_due_for_it(
    storage: Storage, clock: VirtualClock
) -> None:
    # A signal queued the task and its timer is due: whichever of three pollers side by side
    # leases the task, it comes with TimerFired (each poll's tick applies what is due, or
    # waits until the tick beside it has, before it leases).
    driver = await _started(storage, [(COMMAND_START_TIMER, 1, 1_000)])
    await storage.signal_workflow("w", "go", b"null")
    clock.advance(timedelta(seconds=1))
    polls = await asyncio.gather(
        *(storage.poll_workflow_tasks(QUEUE, LEASE_MS, 1) for _ in range(3))
    )
    (task,) = [tasks[0] for tasks in polls if tasks]
    kinds = await _kinds(storage, "w")
    assert "TimerFired" in kinds[: task.history_length]
    jobs = await driver.advance(task)
    assert len(jobs) == 2  # the signal and the timer, in one activation
