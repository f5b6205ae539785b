"""The activity runner: reports survive storage errors, heartbeats are throttled and their
latest details survive a failure, deadlines are enforced on the worker's side too, and an
oversized result is not retried."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from mainspring import (
    ActivityContext,
    RetryPolicy,
    WorkerConfig,
    WorkflowContext,
    activity,
    workflow,
)
from mainspring.errors import ActivityError, StorageError, WorkflowFailedError
from mainspring.testing import time_skipping

from .conftest import TASK_QUEUE, Environment
from .workflows import SHORT


def _failing_first(method: Callable[..., Any], times: int) -> Callable[..., Any]:
    """``method``, raising StorageError on its first ``times`` calls (the storage was down)."""
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise StorageError("the storage is down")
        return await method(*args, **kwargs)

    return flaky


@activity(name="answer")
async def answer() -> int:
    return 42


@workflow(name="asks")
async def asks(ctx: WorkflowContext) -> int:
    value: int = await ctx.execute_activity(answer, start_to_close_timeout=SHORT)
    return value


async def test_a_result_whose_report_meets_storage_errors_is_retried_not_lost(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = env.storage
    monkeypatch.setattr(
        storage, "complete_activity_task", _failing_first(storage.complete_activity_task, 2)
    )
    if hasattr(storage, "complete_activity_with_workflow_task"):
        monkeypatch.setattr(
            storage,
            "complete_activity_with_workflow_task",
            _failing_first(storage.complete_activity_with_workflow_task, 1),
        )
    async with env.worker([asks], [answer]):
        handle = await env.client.start_workflow(asks, id="a", task_queue=TASK_QUEUE)
        # No clock moves: only the retried report can finish it (a lost one would wait out
        # the attempt's 30 s timeout on a clock that never gets there).
        assert await handle.result(timeout=20) == 42


@activity(name="chatty")
async def chatty(ctx: ActivityContext) -> int:
    for step in range(500):
        ctx.heartbeat(step)
        await asyncio.sleep(0)
    return 1


@workflow(name="runs_chatty")
async def runs_chatty(ctx: WorkflowContext) -> int:
    value: int = await ctx.execute_activity(chatty, start_to_close_timeout=SHORT)
    return value


async def test_heartbeats_are_throttled(env: Environment, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = env.storage
    written: list[bytes] = []
    heartbeat = storage.heartbeat_activity_task

    async def counting(task: Any, details: bytes) -> None:
        written.append(details)
        await heartbeat(task, details)

    monkeypatch.setattr(storage, "heartbeat_activity_task", counting)
    async with env.worker([runs_chatty], [chatty]):
        handle = await env.client.start_workflow(runs_chatty, id="c", task_queue=TASK_QUEUE)
        assert await handle.result(timeout=20) == 1
    # The first at once; the next would wait 30 s (no heartbeat timeout): it never comes.
    assert written == [b"0"]


@activity(name="resumes")
async def resumes(ctx: ActivityContext) -> object:
    if ctx.info.attempt == 1:
        ctx.heartbeat("first")
        ctx.heartbeat("latest")  # throttled: not yet written when the attempt fails
        raise ValueError("crashed before its next await")
    return ctx.heartbeat_details


@workflow(name="runs_resumes")
async def runs_resumes(ctx: WorkflowContext) -> object:
    return await ctx.execute_activity(
        resumes,
        start_to_close_timeout=SHORT,
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1)),
    )


async def test_the_latest_heartbeat_details_survive_a_failure_right_after(
    env: Environment,
) -> None:
    async with env.worker([runs_resumes], [resumes]), time_skipping(env.storage):
        handle = await env.client.start_workflow(runs_resumes, id="r", task_queue=TASK_QUEUE)
        assert await handle.result(timeout=20) == "latest"


async def test_an_async_attempt_is_cancelled_at_its_deadline_by_the_worker(
    env: Environment,
) -> None:
    cancelled = asyncio.Event()

    @activity(name="overruns")
    async def overruns() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @workflow(name="runs_overruns")
    async def runs_overruns(ctx: WorkflowContext) -> None:
        await ctx.execute_activity(overruns, start_to_close_timeout=timedelta(milliseconds=200))

    async with env.worker([runs_overruns], [overruns]):
        handle = await env.client.start_workflow(runs_overruns, id="o", task_queue=TASK_QUEUE)
        # The storage's clock stands still (virtual): only the worker can end the attempt.
        await asyncio.wait_for(cancelled.wait(), timeout=10)
        await handle.terminate("done")


@activity(name="too_big")
async def too_big() -> str:
    return "x" * 3_000_000


@workflow(name="runs_too_big")
async def runs_too_big(ctx: WorkflowContext) -> None:
    await ctx.execute_activity(too_big, start_to_close_timeout=SHORT)  # default policy


async def test_an_oversized_result_is_not_retried(env: Environment) -> None:
    async with env.worker([runs_too_big], [too_big]), time_skipping(env.storage):
        handle = await env.client.start_workflow(runs_too_big, id="b", task_queue=TASK_QUEUE)
        with pytest.raises(WorkflowFailedError) as caught:
            await handle.result(timeout=20)
    activity_error = caught.value.__cause__
    assert activity_error.type == ActivityError.__name__  # type: ignore[union-attr]
    cause = activity_error.__cause__  # type: ignore[union-attr]
    assert cause.type == "PayloadTooLargeError"
    assert "3000002 bytes" in str(cause) and "2097152-byte limit" in str(cause)
    history = await handle.history()
    assert '"attempt": 1' in history.to_json()


def _gated(method: Callable[..., Any], gate: asyncio.Event) -> Callable[..., Any]:
    """``method``, held until ``gate`` opens (a store slow to commit)."""

    async def held(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await method(*args, **kwargs)

    return held


def _hold_results(env: Environment, monkeypatch: pytest.MonkeyPatch, gate: asyncio.Event) -> None:
    """The store records no activity result (alone or fused) until ``gate`` opens."""
    storage = env.storage
    for name in ("complete_activity_task", "complete_activity_with_workflow_task"):
        if hasattr(storage, name):
            monkeypatch.setattr(storage, name, _gated(getattr(storage, name), gate))


async def test_a_finished_activity_frees_its_slot_before_its_result_is_recorded(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: dict[str, asyncio.Event] = {name: asyncio.Event() for name in ("a", "b")}
    recorded = asyncio.Event()

    @activity(name="marks")
    async def marks(name: str) -> str:
        started[name].set()
        return name

    @workflow(name="two_at_once")
    async def two_at_once(ctx: WorkflowContext) -> list[str]:
        return list(
            await asyncio.gather(
                ctx.execute_activity(marks, "a", start_to_close_timeout=SHORT),
                ctx.execute_activity(marks, "b", start_to_close_timeout=SHORT),
            )
        )

    _hold_results(env, monkeypatch, recorded)
    config = WorkerConfig(max_concurrent_activities=1)
    async with env.worker([two_at_once], [marks], config=config):
        handle = await env.client.start_workflow(two_at_once, id="t", task_queue=TASK_QUEUE)
        # One slot: "a" ran; its result is not recorded (the store holds it), yet "b" runs.
        await asyncio.wait_for(started["a"].wait(), timeout=10)
        await asyncio.wait_for(started["b"].wait(), timeout=10)
        assert not recorded.is_set()
        recorded.set()
        assert await handle.result(timeout=20) == ["a", "b"]


async def test_a_freed_slot_wakes_the_poller_when_work_is_queued(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    release_a = asyncio.Event()
    a_started = asyncio.Event()
    b_started = asyncio.Event()
    recorded = asyncio.Event()

    @activity(name="waits_or_marks")
    async def waits_or_marks(name: str) -> str:
        if name == "a":
            a_started.set()
            await release_a.wait()
        else:
            b_started.set()
        return name

    @workflow(name="two_queued")
    async def two_queued(ctx: WorkflowContext) -> list[str]:
        return list(
            await asyncio.gather(
                ctx.execute_activity(waits_or_marks, "a", start_to_close_timeout=SHORT),
                ctx.execute_activity(waits_or_marks, "b", start_to_close_timeout=SHORT),
            )
        )

    # An hour between idle polls, and "a"'s result held by the store (so no change of the
    # store's wakes the poller either): only the slot "a" frees can start "b" in time.
    _hold_results(env, monkeypatch, recorded)
    config = WorkerConfig(max_concurrent_activities=1, poll_interval=timedelta(hours=1))
    async with env.worker([two_queued], [waits_or_marks], config=config):
        handle = await env.client.start_workflow(two_queued, id="q", task_queue=TASK_QUEUE)
        await asyncio.wait_for(a_started.wait(), timeout=10)  # both scheduled, "a" running
        release_a.set()
        await asyncio.wait_for(b_started.wait(), timeout=10)
        assert not recorded.is_set()
        recorded.set()
        assert await handle.result(timeout=20) == ["a", "b"]


async def test_concurrent_commits_never_lease_more_attempts_than_there_are_slots(
    env: Environment,
) -> None:
    # Many workflow tasks commit at once (a poll's batch, eager starts), each able to lease
    # the activity it schedules to this worker: the slots each is offered are set aside, so
    # together they never start more than max_concurrent_activities.
    running = 0
    most = 0
    release = asyncio.Event()
    all_started = asyncio.Event()

    @activity(name="counts")
    async def counts(index: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if most >= 3:
            all_started.set()
        await release.wait()
        running -= 1
        return index

    @workflow(name="one_count")
    async def one_count(ctx: WorkflowContext, index: int) -> int:
        value: int = await ctx.execute_activity(counts, index, start_to_close_timeout=SHORT)
        return value

    config = WorkerConfig(max_concurrent_activities=3)
    handles = [
        await env.client.start_workflow(one_count, index, id=f"c{index}", task_queue=TASK_QUEUE)
        for index in range(30)
    ]  # a backlog: the worker's first poll takes them all in one batch
    async with env.worker([one_count], [counts], config=config) as worker:
        await asyncio.wait_for(all_started.wait(), timeout=10)
        assert worker.stats().activity_task_slots_used <= 3
        release.set()
        assert [await handle.result(timeout=20) for handle in handles] == list(range(30))
    assert most == 3


async def test_workflow_polls_take_few_tasks_while_this_workers_activities_are_backed_up(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five runs each schedule an activity; one slot: four attempts wait in the store. While
    # more wait than the slots can run, the workflow pollers ask the store for a few tasks at
    # a time, so a backlog's runs finish instead of all being started at once.
    from mainspring._workflow_tasks import SATURATED_POLL_BATCH

    release = asyncio.Event()
    first_started = asyncio.Event()
    asked: list[int] = []
    asked_while_backed_up = asyncio.Event()
    poll = env.storage.poll_workflow_tasks

    async def recording_poll(task_queue: str, lease_ms: int, max_tasks: int) -> Any:
        asked.append(max_tasks)
        if max_tasks == SATURATED_POLL_BATCH:
            asked_while_backed_up.set()
        return await poll(task_queue, lease_ms, max_tasks)

    monkeypatch.setattr(env.storage, "poll_workflow_tasks", recording_poll)

    @activity(name="held")
    async def held(index: int) -> int:
        first_started.set()
        await release.wait()
        return index

    @workflow(name="one_held")
    async def one_held(ctx: WorkflowContext, index: int) -> int:
        value: int = await ctx.execute_activity(held, index, start_to_close_timeout=SHORT)
        return value

    config = WorkerConfig(max_concurrent_activities=1)
    async with env.worker([one_held], [held], config=config) as worker:
        handles = [
            await env.client.start_workflow(one_held, index, id=f"h{index}", task_queue=TASK_QUEUE)
            for index in range(5)
        ]
        await asyncio.wait_for(first_started.wait(), timeout=10)
        await asyncio.wait_for(asked_while_backed_up.wait(), timeout=10)
        assert worker._activity_runner.queued > 1  # more waiting than the one slot runs
        assert asked[0] == WorkerConfig().workflow_task_batch  # not before it backed up
        release.set()
        assert [await handle.result(timeout=20) for handle in handles] == list(range(5))
