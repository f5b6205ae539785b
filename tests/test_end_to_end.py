"""Workflows run end to end on MemoryStorage: activities, timers, signals, queries, failures."""

from __future__ import annotations

import asyncio
import json
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
from mainspring.errors import (
    ApplicationError,
    QueryFailedError,
    UnsupportedListFilterError,
    WorkflowAlreadyStartedError,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowTerminatedError,
)
from mainspring.storage import WorkflowPage
from mainspring.testing import time_skipping

from .conftest import TASK_QUEUE, Environment
from .workflows import (
    ALL_ACTIVITIES,
    ALL_WORKFLOWS,
    AddItem,
    Approve,
    Items,
    Order,
    Receipt,
    Status,
    cancellable,
    cart,
    checkout,
    failing,
    parallel,
    retrying,
    sequential,
    sleeper,
)


async def test_the_design_example_runs_to_its_result(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        handle = await env.client.start_workflow(
            checkout, Order("o-1", 995), id="order-o-1", task_queue=TASK_QUEUE
        )
        assert await handle.query(Status()) == "waiting"
        await handle.signal(Approve(approver="ann"))
        async with time_skipping(env.storage):  # past the one-hour sleep
            assert await handle.result() == Receipt("o-1", 995)
        assert await handle.query(Status()) == "done"
        description = await handle.describe()
    assert description.status == "COMPLETED"
    assert description.workflow_type == "checkout"
    kinds = [kind for _, _, kind in (await handle.history()).outline()]
    assert kinds[0] == "WorkflowStarted"
    assert kinds[-1] == "WorkflowCompleted"
    assert kinds.count("ActivityScheduled") == 1
    assert "TimerFired" in kinds


async def test_sequential_activities_feed_their_results_back(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        result = await env.client.execute_workflow(sequential, 10, id="s", task_queue=TASK_QUEUE)
    assert result == sum(index * 2 for index in range(10))


async def test_gather_runs_activities_in_parallel_in_the_thread_pool(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        handle = await env.client.start_workflow(parallel, 8, id="p", task_queue=TASK_QUEUE)
        assert await handle.result() == [index * 2 for index in range(8)]
    kinds = [kind for _, _, kind in (await handle.history()).outline()]
    # All eight were scheduled by the first workflow task, not one after another.
    assert kinds[:11] == ["WorkflowStarted", "WorkflowTaskCompleted"] + [
        "ActivityScheduled"
    ] * 8 + [kinds[10]]


async def test_a_month_long_sleep_finishes_under_time_skipping(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES), time_skipping(env.storage):
        result = await env.client.execute_workflow(
            sleeper, 30 * 24 * 3600, id="sleep", task_queue=TASK_QUEUE
        )
    assert result == str(30 * 24 * 3600)


async def test_signals_reach_handlers_and_queries_read_state(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        handle = await env.client.start_workflow(cart, id="cart", task_queue=TASK_QUEUE)
        await handle.signal(AddItem(item="apple"))
        await handle.signal(AddItem(item="pear"))
        # Queries read the state of the last completed workflow task: wait until one has
        # seen both signals.
        await _wait_until_signals_seen(handle)
        assert await handle.query(Items()) == ["apple", "pear"]
        await env.client.signal_workflow("cart", AddItem(item="checkout"))
        assert await handle.result() == ["apple", "pear", "checkout"]


async def test_signals_sent_before_the_worker_starts_are_buffered(env: Environment) -> None:
    handle = await env.client.start_workflow(
        checkout, Order("o-2", 5), id="early", task_queue=TASK_QUEUE
    )
    await handle.signal(Approve(approver="bo"))
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES), time_skipping(env.storage):
        assert await handle.result() == Receipt("o-2", 5)


async def test_wait_signal_times_out_on_a_durable_timer(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES), time_skipping(env.storage):
        handle = await env.client.start_workflow(
            checkout, Order("o-3", 1), id="late", task_queue=TASK_QUEUE
        )
        with pytest.raises(WorkflowFailedError) as caught:
            await handle.result()
    assert caught.value.__cause__ is not None
    assert "TimeoutError" in str(caught.value.__cause__.type)  # type: ignore[attr-defined]


async def test_unknown_query_is_a_typed_error(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        handle = await env.client.start_workflow(cart, id="c2", task_queue=TASK_QUEUE)
        with pytest.raises(QueryFailedError, match="no query handler for 'Status'"):
            await handle.query(Status())
        await handle.terminate("done testing")


async def test_retries_until_success_with_attempt_and_heartbeat_details(
    env: Environment,
) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES), time_skipping(env.storage):
        assert await env.client.execute_workflow(retrying, 3, id="r", task_queue=TASK_QUEUE) == 3
    history = await env.client.get_workflow_handle("r").history()
    assert "ActivityCompleted" in [kind for _, _, kind in history.outline()]
    assert '"attempt": 3' in history.to_json()


async def test_activity_failure_reaches_the_caller_with_its_cause_chain(
    env: Environment,
) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        handle = await env.client.start_workflow(
            failing, "card declined", id="f", task_queue=TASK_QUEUE
        )
        with pytest.raises(WorkflowFailedError) as caught:
            await handle.result()
    workflow_error = caught.value.__cause__
    assert isinstance(workflow_error, ApplicationError)
    assert workflow_error.type == "CheckoutFailed"
    activity_error = workflow_error.__cause__
    assert isinstance(activity_error, ApplicationError)
    assert activity_error.type == "ActivityError"
    root = activity_error.__cause__
    assert isinstance(root, ApplicationError)
    assert (root.type, root.message, root.non_retryable) == (
        "PaymentDeclined",
        "card declined",
        True,
    )
    assert "always_fails" in root.remote_stack_trace


async def test_cancel_reaches_the_workflow_as_cancelled_error(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        handle = await env.client.start_workflow(cancellable, id="cx", task_queue=TASK_QUEUE)
        await _wait_for_event(handle, "TimerStarted")
        await handle.cancel("changed my mind")
        with pytest.raises(WorkflowCanceledError):
            await handle.result()
    kinds = [kind for _, _, kind in (await handle.history()).outline()]
    # The timer was cancelled, and the workflow ran its cleanup activity before it
    # acknowledged the cancellation.
    assert kinds.index("TimerCanceled") > kinds.index("TimerStarted")
    assert kinds.index("ActivityScheduled") > kinds.index("WorkflowCancelRequested")
    assert kinds[-3:] == ["ActivityCompleted", "WorkflowTaskCompleted", "WorkflowCanceled"]


async def test_terminate_ends_the_run_at_once(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        handle = await env.client.start_workflow(cancellable, id="t", task_queue=TASK_QUEUE)
        await handle.terminate("operator")
        with pytest.raises(WorkflowTerminatedError, match="operator"):
            await handle.result()
        with pytest.raises(WorkflowNotRunningError):
            await handle.signal(Approve(approver="x"))


async def test_workflow_ids_are_unique_while_running(env: Environment) -> None:
    await env.client.start_workflow(cart, id="dup", task_queue=TASK_QUEUE)
    with pytest.raises(WorkflowAlreadyStartedError):
        await env.client.start_workflow(cart, id="dup", task_queue=TASK_QUEUE)
    with pytest.raises(WorkflowNotFoundError):
        await env.client.get_workflow_handle("missing").describe()


async def test_list_workflows_reports_every_run(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        await env.client.execute_workflow(sequential, 1, id="a", task_queue=TASK_QUEUE)
        await env.client.start_workflow(cart, id="b", task_queue=TASK_QUEUE)
        runs = {run.workflow_id: run.status async for run in env.client.list_workflows()}
    assert runs == {"a": "COMPLETED", "b": "RUNNING"}
    running = [run.workflow_id async for run in env.client.list_workflows(status="RUNNING")]
    assert running == ["b"]
    of_type = env.client.list_workflows(workflow_type="sequential", status="COMPLETED")
    assert [run.workflow_id async for run in of_type] == ["a"]


async def test_a_runs_status_and_id_read_as_temporalios(env: Environment) -> None:
    from mainspring import WorkflowExecutionStatus

    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES):
        handle = await env.client.start_workflow(sequential, 1, id="a", task_queue=TASK_QUEUE)
        await handle.result()
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.COMPLETED
    assert description.status == "COMPLETED" and f"{description.status}" == "COMPLETED"
    assert description.id == description.workflow_id == "a"
    completed = env.client.list_workflows(status=WorkflowExecutionStatus.COMPLETED)
    assert [run.id async for run in completed] == ["a"]
    assert [run async for run in env.client.list_workflows(status="RUNNING")] == []


async def test_list_workflows_reads_a_page_when_iteration_reaches_it(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in range(5):
        await env.client.start_workflow("anything", id=f"w{number}", task_queue=TASK_QUEUE)
    storage = env.client.storage
    read_page = storage.list_workflows
    sizes: list[int] = []

    async def counted(**arguments: Any) -> WorkflowPage:
        sizes.append(arguments["page_size"])
        return await read_page(**arguments)

    monkeypatch.setattr(storage, "list_workflows", counted)
    runs = env.client.list_workflows(page_size=2)
    assert sizes == []  # nothing is read before iteration
    assert (await anext(runs)).workflow_id == "w0"
    assert sizes == [2]
    assert [run.workflow_id async for run in runs] == ["w1", "w2", "w3", "w4"]
    assert sizes == [2, 2, 2]  # the third page, not full, is the last
    sizes.clear()
    limited = env.client.list_workflows(page_size=2, limit=3)
    assert [run.workflow_id async for run in limited] == ["w0", "w1", "w2"]
    assert sizes == [2, 1]  # the last page asks for what the limit leaves
    assert [run async for run in env.client.list_workflows(limit=0)] == []
    assert sizes == [2, 1]


async def test_list_workflows_refuses_a_query_string_and_an_unknown_status(
    env: Environment,
) -> None:
    with pytest.raises(UnsupportedListFilterError, match="later release"):
        env.client.list_workflows('WorkflowType = "sequential"')
    assert issubclass(UnsupportedListFilterError, ValueError)
    with pytest.raises(ValueError, match="RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED"):
        env.client.list_workflows(status="running")
    with pytest.raises(ValueError, match="page_size"):
        env.client.list_workflows(page_size=0)
    with pytest.raises(ValueError, match="limit"):
        env.client.list_workflows(limit=-1)


@pytest.mark.parametrize("cache_size", [0, 1, 10_000])
async def test_results_do_not_depend_on_the_workflow_cache(
    env: Environment, cache_size: int
) -> None:
    config = WorkerConfig(max_cached_workflows=cache_size)
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES, config):
        handles = [
            await env.client.start_workflow(
                checkout, Order(f"o-{index}", index), id=f"w{index}", task_queue=TASK_QUEUE
            )
            for index in range(3)
        ]
        for handle in handles:
            await handle.signal(Approve(approver="cache"))
        async with time_skipping(env.storage):
            results = [await handle.result() for handle in handles]
        parallel_result = await env.client.execute_workflow(
            parallel, 5, id="par", task_queue=TASK_QUEUE
        )
    assert results == [Receipt(f"o-{index}", index) for index in range(3)]
    assert parallel_result == [0, 2, 4, 6, 8]


async def test_sleep_and_wait_condition_timeout_use_workflow_time(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES), time_skipping(env.storage):
        assert await env.client.execute_workflow(sleeper, 90, id="z", task_queue=TASK_QUEUE) == "90"


async def _wait_until_signals_seen(handle: object) -> None:
    """Until a completed workflow task has seen every signal sent so far."""
    from mainspring import WorkflowHandle

    assert isinstance(handle, WorkflowHandle)
    storage = handle.client.storage
    while True:
        changed = storage.wait_for_change()  # type: ignore[attr-defined]
        events = json.loads((await handle.history()).to_json())["events"]
        last_signal = max(e["event_id"] for e in events if e["type"] == "WorkflowSignaled")
        seen = [
            event["attributes"]["seen_event_id"]
            for event in events
            if event["type"] == "WorkflowTaskCompleted"
        ]
        if seen and max(seen) >= last_signal:
            return
        await changed


async def _wait_for_event(handle: object, kind: str) -> None:
    from mainspring import WorkflowHandle

    assert isinstance(handle, WorkflowHandle)
    storage = handle.client.storage
    while True:
        changed = storage.wait_for_change()  # type: ignore[attr-defined]
        if kind in [k for _, _, k in (await handle.history()).outline()]:
            return
        await changed


async def test_worker_shuts_down_gracefully_while_idle(env: Environment) -> None:
    async with env.worker(ALL_WORKFLOWS, ALL_ACTIVITIES) as worker:
        pass
    assert worker.config.max_cached_workflows > 0
    worker_task = asyncio.ensure_future(worker.run())
    await asyncio.sleep(0)
    worker.shutdown()
    await asyncio.wait_for(worker_task, timeout=5)


async def test_heartbeat_timeout_retries_a_stuck_attempt(env: Environment) -> None:
    first_attempt_running = asyncio.Event()
    release_first_attempt = asyncio.Event()
    first_attempt_cancelled = asyncio.Event()
    first_context: list[ActivityContext] = []

    @activity(name="stuck")
    async def stuck(ctx: ActivityContext) -> int:
        if ctx.info.attempt == 1:
            first_context.append(ctx)
            first_attempt_running.set()
            await release_first_attempt.wait()
            ctx.heartbeat("too late")
            try:
                await asyncio.Event().wait()  # forever, unless the refused heartbeat cancels us
            except asyncio.CancelledError:
                first_attempt_cancelled.set()
                raise
        return ctx.info.attempt

    async with env.worker([calls_stuck], [stuck]):
        handle = await env.client.start_workflow(calls_stuck, id="hb", task_queue=TASK_QUEUE)
        await first_attempt_running.wait()
        env.clock.advance(timedelta(seconds=6))  # past the 5 s heartbeat timeout
        async with time_skipping(env.storage):  # and past the retry backoff
            await _wait_for_event(handle, "ActivityCompleted")
        release_first_attempt.set()
        assert await handle.result() == 2
        # The late heartbeat of the timed-out attempt is refused: the attempt is cancelled.
        await first_attempt_cancelled.wait()
        assert first_context[0].is_cancelled


@workflow
async def calls_stuck(ctx: WorkflowContext) -> int:
    result: int = await ctx.execute_activity(
        "stuck",
        start_to_close_timeout=timedelta(minutes=5),
        heartbeat_timeout=timedelta(seconds=5),
        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=1)),
    )
    return result
