"""Activity cancellation, thread-pool heartbeats, and graceful worker shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from datetime import timedelta

import pytest

from mainspring import (
    ActivityContext,
    Replayer,
    WorkerConfig,
    WorkflowContext,
    activity,
    workflow,
)
from mainspring.errors import ActivityError

from .conftest import TASK_QUEUE, Environment
from .workflows import ALL_ACTIVITIES, ALL_WORKFLOWS

SHORT = timedelta(seconds=30)


async def _kinds(env: Environment, workflow_id: str) -> list[str]:
    history = await env.client.get_workflow_handle(workflow_id).history()
    return [kind for _, _, kind in history.outline()]


@workflow(name="cancel_after_signal")
async def cancel_after_signal(ctx: WorkflowContext) -> str:
    from .workflows import AddItem

    # Heartbeats are throttled to 80% of the heartbeat timeout, and a cancel reaches an
    # activity through a heartbeat's answer: a short timeout makes it quick.
    handle = ctx.start_activity(
        "waits_for_cancel",
        start_to_close_timeout=SHORT,
        heartbeat_timeout=timedelta(milliseconds=250),
    )
    await ctx.wait_signal(AddItem)
    handle.cancel()
    try:
        await handle
    except asyncio.CancelledError:
        return "activity cancelled"
    return "activity finished"


async def test_cancelling_a_thread_pool_activity_reaches_it_through_heartbeats(
    env: Environment,
) -> None:
    from .workflows import AddItem

    started = threading.Event()
    saw_cancel = threading.Event()

    @activity(name="waits_for_cancel")
    def waits_for_cancel(ctx: ActivityContext) -> str:
        started.set()
        for _ in range(2_000):
            ctx.heartbeat()
            if ctx.is_cancelled:
                saw_cancel.set()
                return "stopped"
            saw_cancel.wait(0.005)  # the activity's own pacing, in its own thread
        return "never cancelled"

    async with env.worker([cancel_after_signal], [waits_for_cancel]):
        handle = await env.client.start_workflow(cancel_after_signal, id="c", task_queue=TASK_QUEUE)
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        await handle.signal(AddItem(item="now"))
        assert await handle.result() == "activity cancelled"
        assert await asyncio.get_running_loop().run_in_executor(None, saw_cancel.wait, 10)
    # The cancel request and the completion were one task: nothing splits its commands, and
    # the history replays.
    kinds = await _kinds(env, "c")
    assert kinds[-3:] == ["WorkflowTaskCompleted", "ActivityCancelRequested", "WorkflowCompleted"]
    Replayer(workflows=[cancel_after_signal]).replay(
        await env.client.get_workflow_handle("c").history()
    )


@workflow(name="cancels_before_sending")
async def cancels_before_sending(ctx: WorkflowContext) -> str:
    handle = ctx.start_activity("never_runs", start_to_close_timeout=SHORT)
    handle.cancel()
    timer = asyncio.ensure_future(ctx.sleep(60))
    timer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await handle
    return "done"


async def test_work_cancelled_in_the_activation_that_asked_for_it_is_never_recorded(
    env: Environment,
) -> None:
    async with env.worker([cancels_before_sending]):
        result = await env.client.execute_workflow(
            cancels_before_sending, id="w", task_queue=TASK_QUEUE
        )
    assert result == "done"
    assert await _kinds(env, "w") == [
        "WorkflowStarted",
        "WorkflowTaskCompleted",
        "WorkflowCompleted",
    ]


@workflow(name="awaits_one_activity")
async def awaits_one_activity(ctx: WorkflowContext) -> str:
    result: str = await ctx.execute_activity("slow", start_to_close_timeout=SHORT)
    return result


async def test_shutdown_lets_a_running_activity_finish(env: Environment) -> None:
    running = asyncio.Event()
    release = asyncio.Event()

    @activity(name="slow")
    async def slow() -> str:
        running.set()
        await release.wait()
        return "finished"

    config = WorkerConfig(graceful_shutdown_timeout=timedelta(seconds=30))
    worker_context = env.worker([awaits_one_activity], [slow], config)
    worker = await worker_context.__aenter__()
    handle = await env.client.start_workflow(awaits_one_activity, id="s", task_queue=TASK_QUEUE)
    await running.wait()
    worker.shutdown()
    release.set()
    await worker_context.__aexit__(None, None, None)
    # The attempt finished and was reported during shutdown; the workflow task it created
    # waits for the next worker.
    assert "ActivityCompleted" in await _kinds(env, "s")
    async with env.worker([awaits_one_activity], [slow]):
        assert await handle.result() == "finished"


async def test_shutdown_cancels_an_activity_past_the_grace_period(env: Environment) -> None:
    running = asyncio.Event()
    cancelled = asyncio.Event()

    @activity(name="slow")
    async def slow() -> str:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "unreachable"

    config = WorkerConfig(graceful_shutdown_timeout=timedelta(0))
    async with env.worker([awaits_one_activity], [slow], config):
        await env.client.start_workflow(awaits_one_activity, id="g", task_queue=TASK_QUEUE)
        await running.wait()
    assert cancelled.is_set()
    # Nothing was reported: the attempt will time out and be retried by another worker.
    assert "ActivityCompleted" not in await _kinds(env, "g")


@workflow(name="signal_handler_async")
async def signal_handler_async(ctx: WorkflowContext) -> list[str]:
    from .workflows import AddItem

    seen: list[str] = []

    async def on_item(signal: AddItem) -> None:
        await ctx.sleep(1)
        seen.append(signal.item)

    ctx.set_signal_handler(AddItem, on_item)
    await ctx.wait_condition(lambda: len(seen) == 2, timeout=timedelta(hours=1))
    return seen


async def test_async_signal_handlers_and_a_condition_met_before_its_timeout(
    env: Environment,
) -> None:
    from mainspring.testing import time_skipping

    from .workflows import AddItem

    async with env.worker([signal_handler_async]):
        handle = await env.client.start_workflow(
            signal_handler_async, id="h", task_queue=TASK_QUEUE
        )
        await handle.signal(AddItem(item="a"))
        await handle.signal(AddItem(item="b"))
        async with time_skipping(env.storage):
            assert await handle.result() == ["a", "b"]
    kinds = await _kinds(env, "h")
    assert kinds.count("TimerFired") == 2
    assert "TimerCanceled" in kinds, "the condition's timeout timer was cancelled"


@pytest.mark.parametrize("outcome", ["failed", "timed_out"])
async def test_activity_error_carries_attempt_and_timeout_type(
    env: Environment, outcome: str
) -> None:
    from mainspring import RetryPolicy
    from mainspring.testing import time_skipping

    attempt_running = asyncio.Event()

    @activity(name="bad")
    async def bad() -> None:
        if outcome == "failed":
            raise ValueError("nope")
        attempt_running.set()
        await asyncio.Event().wait()

    @workflow(name="calls_bad")
    async def calls_bad(ctx: WorkflowContext) -> str:
        try:
            await ctx.execute_activity(
                "bad",
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2),
            )
        except ActivityError as error:
            return f"{error.attempt} {error.timeout_type} {error.__cause__}"
        return "no error"

    config = WorkerConfig(graceful_shutdown_timeout=timedelta(0))
    async with env.worker([calls_bad], [bad], config), time_skipping(env.storage):
        handle = await env.client.start_workflow(calls_bad, id="b", task_queue=TASK_QUEUE)
        if outcome == "timed_out":
            # A running attempt keeps time still (time skipping waits for idle), so move the
            # clock past each attempt's 5 s timeout by hand; skipping covers the backoff.
            for _ in range(2):
                await attempt_running.wait()
                attempt_running.clear()
                env.clock.advance(timedelta(seconds=6))
        result = await handle.result()
    if outcome == "failed":
        assert result == "2 None nope"
    else:
        assert result.startswith("2 start_to_close ")


async def test_workers_raise_the_collector_threshold_while_they_run(env: Environment) -> None:
    before = gc.get_threshold()
    first = env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES, WorkerConfig(gc_threshold=before[0] + 5_000))
    second = env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES, WorkerConfig(gc_threshold=before[0] + 9_000))
    async with first:  # entering starts the worker's run()
        assert gc.get_threshold() == (before[0] + 5_000, *before[1:])
        async with second:
            assert gc.get_threshold()[0] == before[0] + 9_000
        assert gc.get_threshold()[0] == before[0] + 9_000  # restored only by the last to stop
    assert gc.get_threshold() == before
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES, WorkerConfig(gc_threshold=None)):
        assert gc.get_threshold() == before
