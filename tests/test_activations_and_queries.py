"""Activations and queries: queries leave no trace, each signal reaches one waiter, any
cancelled command future issues its cancel, jobs apply in stages (a signal recorded before a
timer fired wins), the flags a task recorded decide how it replays, and run-ahead logs once."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from mainspring import History, Replayer, WorkflowContext, activity, workflow
from mainspring.errors import NonDeterminismError, QueryFailedError
from mainspring.testing import time_skipping

from .conftest import TASK_QUEUE, Environment
from .histories.record_signal_and_step import signal_and_step
from .workflows import SHORT, AddItem, Items, double

GOLDEN = Path(__file__).parent / "histories" / "format-1"


async def _until_tasks_complete(env: Environment, workflow_id: str, count: int) -> None:
    """Until ``count`` workflow tasks of the run have completed (their boundaries recorded)."""
    handle = env.client.get_workflow_handle(workflow_id)
    while True:
        kinds = [kind for _, _, kind in (await handle.history()).outline()]
        if kinds.count("WorkflowTaskCompleted") >= count:
            return
        await asyncio.sleep(0.005)


@workflow(name="query_with_side_effects")
async def query_with_side_effects(ctx: WorkflowContext) -> list[int]:
    items: list[str] = []

    def sneaky(query: Items) -> list[str]:
        ctx.start_activity(double, 1, start_to_close_timeout=SHORT)
        ctx.random()
        return items

    ctx.set_query_handler(Items, sneaky)
    first = ctx.random()
    ctx.set_signal_handler(AddItem, lambda signal: items.append(signal.item))
    await ctx.wait_condition(lambda: bool(items))
    value: int = await ctx.execute_activity(double, 21, start_to_close_timeout=SHORT)
    # The RNG went on from where the workflow left it, not where the query left it.
    assert ctx.random() != first
    return [value]


async def test_a_query_that_issues_a_command_fails_and_leaves_no_trace(env: Environment) -> None:
    async with env.worker([query_with_side_effects], [double]):
        handle = await env.client.start_workflow(
            query_with_side_effects, id="q", task_queue=TASK_QUEUE
        )
        await _until_tasks_complete(env, "q", 1)
        for _ in range(2):
            with pytest.raises(QueryFailedError, match="issued commands"):
                await handle.query(Items())
        await handle.signal(AddItem(item="go"))
        assert await handle.result(timeout=30) == [42]
    history = await handle.history()
    scheduled = [
        event
        for event in json.loads(history.to_json())["events"]
        if event["type"] == "ActivityScheduled"
    ]
    assert [event["attributes"]["seq"] for event in scheduled] == [1]
    Replayer(workflows=[query_with_side_effects]).replay(history)


@workflow(name="two_waiters")
async def two_waiters(ctx: WorkflowContext) -> list[str]:
    await ctx.sleep(1)  # the first signal arrives (and is buffered) before anyone waits

    async def wait() -> str:
        return (await ctx.wait_signal(AddItem)).item

    return sorted(await asyncio.gather(wait(), wait()))


async def test_each_buffered_signal_goes_to_exactly_one_waiter(env: Environment) -> None:
    async with env.worker([two_waiters]):
        handle = await env.client.start_workflow(two_waiters, id="t", task_queue=TASK_QUEUE)
        await handle.signal(AddItem(item="a"))
        async with time_skipping(env.storage):
            await _until_tasks_complete(env, "t", 2)  # past the sleep: both wait, one fed
            await handle.signal(AddItem(item="b"))
            assert await handle.result(timeout=30) == ["a", "b"]


@workflow(name="cancels_the_pending")
async def cancels_the_pending(ctx: WorkflowContext) -> str:
    slow = ctx.execute_activity("never_runs", start_to_close_timeout=SHORT, task_queue="nobody")
    nap = asyncio.ensure_future(ctx.sleep(5))
    _done, pending = await asyncio.wait({slow, nap}, return_when=asyncio.FIRST_COMPLETED)
    for future in pending:
        future.cancel()
    try:
        await slow
    except asyncio.CancelledError:
        return "cancelled"
    return "finished"


async def test_cancelling_the_bare_future_of_execute_activity_sends_the_cancel(
    env: Environment,
) -> None:
    async with env.worker([cancels_the_pending]):
        handle = await env.client.start_workflow(cancels_the_pending, id="c", task_queue=TASK_QUEUE)
        await _until_tasks_complete(env, "c", 1)
        # The nap ends; the activity, queued where nobody polls, does not (and holds time
        # skipping back: a queued attempt is work in flight).
        env.clock.advance(5)
        assert await handle.result(timeout=30) == "cancelled"
    kinds = [kind for _, _, kind in (await handle.history()).outline()]
    assert "ActivityCancelRequested" in kinds


@workflow(name="approval")
async def approval(ctx: WorkflowContext) -> str:
    try:
        signal = await ctx.wait_signal(AddItem, timeout=timedelta(milliseconds=900))
    except TimeoutError:
        await ctx.sleep(60)  # a command the signalled path does not issue
        return "timed out"
    return signal.item


async def test_a_signal_that_came_before_the_timer_wins_in_one_activation(
    env: Environment,
) -> None:
    async with env.worker([approval]):
        handle = await env.client.start_workflow(approval, id="a", task_queue=TASK_QUEUE)
        await _until_tasks_complete(env, "a", 1)  # waiting, its timer started
    # The worker is down: the signal at 100 ms, the timer due at 900 ms, both delivered in
    # the next worker's first activation.
    env.clock.advance(0.1)
    await handle.signal(AddItem(item="approved"))
    env.clock.advance(0.9)
    async with env.worker([approval]):
        assert await handle.result(timeout=30) == "approved"
    history = await handle.history()
    kinds = [kind for _, _, kind in history.outline()]
    signaled, fired = kinds.index("WorkflowSignaled"), kinds.index("TimerFired")
    boundaries = [index for index, kind in enumerate(kinds) if kind == "WorkflowTaskCompleted"]
    assert boundaries[0] < min(signaled, fired) and max(signaled, fired) < boundaries[1]
    Replayer(workflows=[approval]).replay(history)
    # Recorded as an engine before staged jobs would have (flags 0), the timer wins: the same
    # events no longer match the recorded commands. The flags decide, per task.
    old = json.loads(history.to_json())
    for event in old["events"]:
        if event["type"] == "WorkflowTaskCompleted":
            event["attributes"]["flags"] = 0
    with pytest.raises(NonDeterminismError):
        Replayer(workflows=[approval]).replay(History.from_json(json.dumps(old)))


@workflow(name="logs_once")
async def logs_once(ctx: WorkflowContext) -> int:
    ctx.set_signal_handler(AddItem, lambda signal: None)
    ctx.logger.info("starting the step")
    value: int = await ctx.execute_activity("pokes", 2, start_to_close_timeout=SHORT)
    ctx.logger.info("step done with %d", value)
    return value


async def test_each_line_is_logged_once_whatever_ran_ahead(
    env: Environment, caplog: pytest.LogCaptureFixture
) -> None:
    """On a store that fuses a result with the workflow task it wakes, the worker runs the
    workflow ahead before anything is recorded; a signal landing meanwhile voids that run-ahead
    and the task runs again from the history. Its lines are logged once, by the run that
    counts."""

    @activity(name="pokes")
    async def pokes(value: int) -> int:
        await env.client.get_workflow_handle(workflow_id).signal(AddItem(item="meanwhile"))
        return value * 2

    caplog.set_level(logging.INFO, logger="mainspring.workflow")
    async with env.worker([logs_once], [pokes]):
        for index in range(3):
            workflow_id = f"l-{index}"
            handle = await env.client.start_workflow(
                logs_once, id=workflow_id, task_queue=TASK_QUEUE
            )
            assert await handle.result(timeout=30) == 4
    lines = [
        record.getMessage() for record in caplog.records if record.name == "mainspring.workflow"
    ]
    assert lines.count("starting the step") == 3
    assert lines.count("step done with 4") == 3


def test_a_history_from_before_staged_jobs_replays_its_wake_order() -> None:
    """Recorded by the release before engine flags: a signal and an activity result reached the
    workflow in one activation while a coroutine waited in wait_signal. That release woke the
    main coroutine first (the waiter woke when conditions were checked), so step2 was
    scheduled before "a"; replay must do the same."""
    history = History.from_json((GOLDEN / "signal-and-step.json").read_text())
    Replayer(workflows=[signal_and_step]).replay(history)


@workflow(name="gives_up_waiting")
async def gives_up_waiting(ctx: WorkflowContext) -> list[str]:
    impatient = asyncio.ensure_future(ctx.wait_signal(AddItem, timeout=timedelta(hours=1)))
    await ctx.sleep(1)
    impatient.cancel()  # a waiter that gives up must not take the next signal with it
    first = await ctx.wait_signal(AddItem)
    second = await ctx.wait_signal(AddItem)
    return [first.item, second.item]


async def test_a_cancelled_waiter_takes_no_signal_with_it(env: Environment) -> None:
    async with env.worker([gives_up_waiting]):
        handle = await env.client.start_workflow(gives_up_waiting, id="g", task_queue=TASK_QUEUE)
        await _until_tasks_complete(env, "g", 1)
        env.clock.advance(1)
        await _until_tasks_complete(env, "g", 2)
        await handle.signal(AddItem(item="one"))
        await handle.signal(AddItem(item="two"))
        assert await handle.result(timeout=30) == ["one", "two"]
    Replayer(workflows=[gives_up_waiting]).replay(await handle.history())


@workflow(name="query_that_cancels")
async def query_that_cancels(ctx: WorkflowContext) -> str:
    handle = ctx.start_activity("never_runs", start_to_close_timeout=SHORT, task_queue="nobody")

    def meddles(query: Items) -> list[str]:
        handle.cancel()
        return []

    ctx.set_query_handler(Items, meddles)
    await ctx.wait_signal(AddItem)
    handle.cancel()
    try:
        await handle
    except asyncio.CancelledError:
        return "cancelled by the workflow"
    return "finished"


async def test_a_query_that_cancels_fails_and_the_workflow_goes_on_as_recorded(
    env: Environment,
) -> None:
    async with env.worker([query_that_cancels]):
        handle = await env.client.start_workflow(query_that_cancels, id="m", task_queue=TASK_QUEUE)
        await _until_tasks_complete(env, "m", 1)
        with pytest.raises(QueryFailedError, match="changed the workflow's state"):
            await handle.query(Items())
        await handle.signal(AddItem(item="go"))
        assert await handle.result(timeout=30) == "cancelled by the workflow"
    history = await handle.history()
    kinds = [kind for _, _, kind in history.outline()]
    # The cancel is the workflow's own, recorded after the signal, not the query's.
    assert kinds.index("WorkflowSignaled") < kinds.index("ActivityCancelRequested")
    Replayer(workflows=[query_that_cancels]).replay(history)
