"""Determinism: escapes from the workflow loop, replay, non-determinism, the workflow cache."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from mainspring import Replayer, WorkerConfig, WorkflowContext, WorkflowHandle, workflow
from mainspring.errors import NonDeterminismError, UnknownWorkflowTypeError
from mainspring.testing import time_skipping

from .conftest import TASK_QUEUE, Environment
from .workflows import (
    ALL_ACTIVITIES,
    ALL_WORKFLOWS,
    SHORT,
    deterministic_values,
    double,
    sequential,
)


async def _until_recorded(env: Environment, handle: WorkflowHandle[Any], kind: str) -> None:
    while True:
        changed = env.storage.wait_for_change()
        if kind in [recorded for _, _, recorded in (await handle.history()).outline()]:
            return
        await changed


async def _first_task_failure(env: Environment, workflow_id: str) -> str:
    while True:
        changed = env.storage.wait_for_change()
        description = await env.client.get_workflow_handle(workflow_id).describe()
        if description.last_task_failure:
            return description.last_task_failure
        await changed


@workflow(name="escapes")
async def sleeps_on_asyncio(ctx: WorkflowContext) -> None:
    await asyncio.sleep(1)


@workflow(name="escapes")
async def swallows_the_escape(ctx: WorkflowContext) -> str:
    try:  # noqa: SIM105 - spelled out: this is the user code being tested
        await asyncio.sleep(1)
    except Exception:
        pass
    return "pretends all is well"


@workflow(name="escapes")
async def opens_a_socket(ctx: WorkflowContext) -> None:
    await asyncio.open_connection("127.0.0.1", 9)


@pytest.mark.parametrize("escaping", [sleeps_on_asyncio, swallows_the_escape, opens_a_socket])
async def test_escaping_the_loop_fails_the_task_and_records_nothing(
    env: Environment, escaping: object
) -> None:
    async with env.worker([escaping]):  # type: ignore[list-item]
        handle = await env.client.start_workflow("escapes", id="e", task_queue=TASK_QUEUE)
        failure = await _first_task_failure(env, "e")
    assert "WorkflowEscapeError" in failure
    assert "[MS1200]" in failure
    description = await handle.describe()
    assert description.status == "RUNNING", "a task failure never fails the run"
    assert [kind for _, _, kind in (await handle.history()).outline()] == ["WorkflowStarted"]


async def test_awaiting_another_loops_future_is_an_escape(env: Environment) -> None:
    foreign: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @workflow(name="foreign")
    async def awaits_foreign(ctx: WorkflowContext) -> int:
        return await foreign

    async with env.worker([awaits_foreign]):
        await env.client.start_workflow("foreign", id="f", task_queue=TASK_QUEUE)
        failure = await _first_task_failure(env, "f")
    assert "different loop" in failure
    foreign.cancel()


async def test_a_foreign_future_awaited_again_is_still_an_escape(env: Environment) -> None:
    # asyncio words the second await of a foreign future differently ("await wasn't used
    # with future"): a retried task, or a second run, must still fail the task, not the run.
    foreign: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @workflow(name="foreign")
    async def awaits_foreign(ctx: WorkflowContext) -> int:
        return await foreign

    async with env.worker([awaits_foreign]):
        for workflow_id in ("first", "second"):
            handle = await env.client.start_workflow(
                "foreign", id=workflow_id, task_queue=TASK_QUEUE
            )
            assert "different loop" in await _first_task_failure(env, workflow_id)
            assert (await handle.describe()).status == "RUNNING"
    foreign.cancel()


async def test_a_fixed_deployment_picks_up_a_failed_task(env: Environment) -> None:
    @workflow(name="escapes")
    async def fixed(ctx: WorkflowContext) -> str:
        await ctx.sleep(1)
        return "fixed"

    handle = await env.client.start_workflow("escapes", id="e", task_queue=TASK_QUEUE)
    async with env.worker([sleeps_on_asyncio]):
        await _first_task_failure(env, "e")
    async with env.worker([fixed]), time_skipping(env.storage):
        assert await handle.result() == "fixed"


async def _record(env: Environment, workflow_function: object, argument: object) -> object:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES), time_skipping(env.storage):
        handle = await env.client.start_workflow(
            workflow_function,  # type: ignore[arg-type]
            argument,
            id="recorded",
            task_queue=TASK_QUEUE,
        )
        await handle.result()
    return await handle.history()


async def test_replayer_accepts_the_code_that_recorded_the_history(env: Environment) -> None:
    history = await _record(env, sequential, 5)
    Replayer(workflows=ALL_WORKFLOWS).replay(history)  # type: ignore[arg-type]


async def test_an_edited_workflow_is_non_determinism_naming_event_and_commands(
    env: Environment,
) -> None:
    history = await _record(env, sequential, 3)

    @workflow(name="sequential")
    async def edited(ctx: WorkflowContext, count: int) -> int:
        total = await ctx.execute_activity(double, 0, start_to_close_timeout=SHORT)
        await ctx.sleep(5)  # inserted between the first and second activity
        for index in range(1, count):
            total += await ctx.execute_activity(double, index, start_to_close_timeout=SHORT)
        return total

    with pytest.raises(NonDeterminismError) as caught:
        Replayer(workflows=[edited]).replay(history)  # type: ignore[arg-type]
    error = caught.value
    assert error.event_id == 6  # started, task, scheduled, completed, task, scheduled
    assert error.recorded == "ScheduleActivity(seq=2, type=double)"
    assert error.issued == "StartTimer(seq=1, duration_ms=5000)"
    assert "[MS1100]" in str(error)


async def test_a_worker_running_edited_code_fails_the_task_not_the_run(env: Environment) -> None:
    handle = await env.client.start_workflow(sequential, 3, id="seq", task_queue=TASK_QUEUE)
    # One step recorded with the original code, then stop: a worker with only the workflow
    # schedules the first activity, one with only the activity completes it.
    async with env.worker([sequential], []):
        await _until_recorded(env, handle, "ActivityScheduled")
    async with env.worker([], [double]):
        await _until_recorded(env, handle, "ActivityCompleted")

    @workflow(name="sequential")
    async def edited(ctx: WorkflowContext, count: int) -> int:
        await ctx.sleep(1)
        return 0

    config = WorkerConfig(max_cached_workflows=0)
    async with env.worker([edited], [double], config):
        failure = await _first_task_failure(env, "seq")
    assert "NonDeterminismError" in failure
    assert (await handle.describe()).status == "RUNNING"


async def test_replayer_needs_the_workflow_type(env: Environment) -> None:
    history = await _record(env, sequential, 1)
    with pytest.raises(UnknownWorkflowTypeError):
        Replayer(workflows=[deterministic_values]).replay(history)  # type: ignore[arg-type]


@pytest.mark.parametrize("cache_size", [0, 10])
async def test_random_uuid_and_now_are_stable_across_replay(
    env: Environment, cache_size: int
) -> None:
    config = WorkerConfig(max_cached_workflows=cache_size)
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES, config), time_skipping(env.storage):
        first = await env.client.execute_workflow(
            deterministic_values, id="d1", task_queue=TASK_QUEUE
        )
    assert first[0] != first[3], "two uuid4 calls differ"
    assert first[4] > first[2], "time moved with the timer"
    history = await env.client.get_workflow_handle("d1").history()
    Replayer(workflows=ALL_WORKFLOWS).replay(history)


async def test_workflow_logger_is_silent_during_replay(
    env: Environment, caplog: pytest.LogCaptureFixture
) -> None:
    @workflow(name="chatty")
    async def chatty(ctx: WorkflowContext) -> None:
        for step in range(3):
            ctx.logger.info("step %d", step)
            await ctx.execute_activity(double, step, start_to_close_timeout=SHORT)

    caplog.set_level(logging.INFO, logger="mainspring.workflow")
    config = WorkerConfig(max_cached_workflows=0)  # every task replays from the start
    async with env.worker([chatty], [double], config):
        await env.client.execute_workflow("chatty", id="c", task_queue=TASK_QUEUE)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["step 0", "step 1", "step 2"]
