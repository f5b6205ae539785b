"""The worker's sticky cache and what reads it: bounded by count and bytes (least recently used
evicted, an evicted workflow resumed by replay), queries kept incremental and fresh, deferred
queries that never leak, and the stats that report it all."""

from __future__ import annotations

import asyncio
import gc
import uuid
from pathlib import Path
from typing import Any

import msgspec

from mainspring import Worker, WorkerConfig, WorkflowContext, WorkflowHandle, workflow
from mainspring._workflow_tasks import WorkflowTaskRunner
from mainspring.storage.base import QueryTask

from .conftest import TASK_QUEUE, Environment
from .workflows import AddItem, Items, cart, no_op, three_no_ops


async def _until_first_task_done(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the run's first workflow task has committed (the run waits on its signal)."""
    storage = handle.client.storage
    while True:
        changed = storage.wait_for_change()
        if (await handle.describe()).history_length >= 2:
            changed.cancel()
            return
        await changed


async def test_the_cache_evicts_the_least_recently_used_and_an_evicted_run_resumes_by_replay(
    env: Environment,
) -> None:
    config = WorkerConfig(max_cached_workflows=2)
    async with env.worker([cart], config=config) as worker:
        handles = []
        for index in range(3):
            handle = await env.client.start_workflow(cart, id=f"c{index}", task_queue=TASK_QUEUE)
            await _until_first_task_done(handle)
            handles.append(handle)
        stats = worker.stats()
        assert stats.sticky_cache_size == 2
        assert stats.sticky_cache_total_forced_eviction == 1
        misses_before = stats.sticky_cache_miss
        # c0 was the least recently used: evicted. Its signal rebuilds it by replay.
        await handles[0].signal(AddItem(item="checkout"))
        assert await handles[0].result() == ["checkout"]
        assert worker.stats().sticky_cache_miss == misses_before + 1
        # c2 was kept: its signal finds it cached.
        hits_before = worker.stats().sticky_cache_hit
        await handles[2].signal(AddItem(item="checkout"))
        assert await handles[2].result() == ["checkout"]
        assert worker.stats().sticky_cache_hit == hits_before + 1


@workflow(name="schedules_a_big_activity")
async def schedules_a_big_activity(ctx: WorkflowContext, blob: str) -> int:
    # Run on a queue no worker here polls: the run stays cached with its last commit.
    result: int = await ctx.execute_activity(
        "measure", blob, start_to_close_timeout=60, task_queue="elsewhere"
    )
    return result


async def test_the_cache_is_bounded_by_the_history_bytes_its_runs_keep(tmp_path: Path) -> None:
    # SQLite hands a commit's events back, and a cached run keeps them for its next task:
    # each of these keeps its 40 kB activity input, so two fit under 100 kB.
    env = Environment("sqlite", tmp_path)
    config = WorkerConfig(max_cached_history_bytes=100_000)
    async with env.worker([schedules_a_big_activity], config=config) as worker:
        for index in range(3):
            handle = await env.client.start_workflow(
                schedules_a_big_activity, "x" * 40_000, id=f"h{index}", task_queue=TASK_QUEUE
            )
            await _until_first_task_done(handle)
        stats = worker.stats()
        assert stats.sticky_cache_size == 2
        assert 80_000 <= stats.sticky_cache_bytes <= 100_000
        assert stats.sticky_cache_total_forced_eviction == 1
    await env.storage.close()


async def test_a_long_running_cached_workflow_keeps_few_history_bytes(env: Environment) -> None:
    # 200 signals through one cached run: what it keeps does not grow with its history.
    async with env.worker([cart]) as worker:
        handle = await env.client.start_workflow(cart, id="long", task_queue=TASK_QUEUE)
        await _until_first_task_done(handle)
        sizes = []
        for index in range(200):
            await handle.signal(AddItem(item=f"item-{index:03}-" + "y" * 1_000))
            if index in (20, 199):
                await _until_signals_seen(handle, index + 1)
                sizes.append(worker.stats().sticky_cache_bytes)
        assert sizes[1] < 3 * sizes[0] + 8_000, sizes
        await handle.signal(AddItem(item="checkout"))
        assert len(await handle.result()) == 201


async def _until_signals_seen(handle: WorkflowHandle[Any, Any], count: int) -> None:
    storage = handle.client.storage
    while True:
        changed = storage.wait_for_change()
        history = msgspec.json.decode((await handle.history()).to_json())
        events = history["events"]
        signals = [e["event_id"] for e in events if e["type"] == "WorkflowSignaled"]
        seen = [
            e["attributes"]["seen_event_id"] for e in events if e["type"] == "WorkflowTaskCompleted"
        ]
        if len(signals) >= count and seen and max(seen) >= signals[count - 1]:
            changed.cancel()
            return
        await changed


async def _polled_query(
    env: Environment, handle: WorkflowHandle[Any, Any]
) -> tuple[Any, QueryTask]:
    """Sends an Items query and takes it off the queue by hand (no worker runs meanwhile)."""
    asking = asyncio.ensure_future(handle.query(Items(), timeout=30))
    while True:
        changed = env.storage.wait_for_change()
        query = await env.storage.poll_query(TASK_QUEUE)
        if query is not None:
            changed.cancel()
            return asking, query
        await changed


def _runner(env: Environment, **config: Any) -> WorkflowTaskRunner:
    return WorkflowTaskRunner(env.storage, TASK_QUEUE, _definitions(), WorkerConfig(**config))


def _definitions() -> dict[str, Any]:
    from mainspring._definitions import workflow_definition

    definition = workflow_definition(cart)
    return {definition.name: definition}


async def test_a_query_on_an_uncached_run_caches_it_and_later_queries_read_only_new_events(
    env: Environment,
) -> None:
    handle = await env.client.start_workflow(cart, id="q", task_queue=TASK_QUEUE)
    async with env.worker([cart]):
        await handle.signal(AddItem(item="apple"))
        await _until_signals_seen(handle, 1)
    answering = _runner(env)  # a worker that has never seen the run
    asking, query = await _polled_query(env, handle)
    await answering._answer_query(query)
    assert await asking == ["apple"]
    assert (answering.cache.misses, answering.cache.hits, len(answering.cache)) == (1, 0, 1)
    # Another worker moves the run on; the cached copy catches up from the new events only.
    async with env.worker([cart]):
        await handle.signal(AddItem(item="pear"))
        await _until_signals_seen(handle, 2)
    asking, query = await _polled_query(env, handle)
    await answering._answer_query(query)
    assert await asking == ["apple", "pear"]
    assert (answering.cache.misses, answering.cache.hits) == (1, 1)


async def test_a_query_deferred_while_another_worker_runs_the_first_task_is_answered(
    env: Environment,
) -> None:
    handle = await env.client.start_workflow(cart, id="d", task_queue=TASK_QUEUE)
    waiting = _runner(env)
    asking, query = await _polled_query(env, handle)
    await waiting._answer_query(query)  # no task has completed: the query waits
    assert list(waiting._deferred_queries) == [query.run_id]
    async with Worker(env.client, task_queue=TASK_QUEUE, workflows=[cart]):
        await _until_first_task_done(handle)
    waiting._deferred_checked = float("-inf")  # as if a poll interval had passed
    # A poll that finds no task of its own still looks at the deferred queries again.
    await waiting.poll_once()
    assert await asyncio.wait_for(asking, timeout=5) == []
    assert waiting._deferred_queries == {}


async def test_finished_workflows_leave_no_reference_cycles(env: Environment) -> None:
    # A closed run's instance and each finished attempt are freed by reference counting:
    # nothing waits for the cyclic collector (whose backlog a busy worker's RSS grew by).
    config = WorkerConfig(gc_threshold=None)
    async with env.worker([three_no_ops], [no_op], config=config):
        await _run_three_no_ops(env, "warm", 5)
        gc.collect()
        gc.disable()
        try:
            await _run_three_no_ops(env, "counted", 50)
            unreachable = gc.collect()
        finally:
            gc.enable()
    # Before: about 40 objects in cycles per workflow (instance, context, loop, attempts).
    assert unreachable < 50, unreachable


async def test_evicted_instances_leave_no_reference_cycles(env: Environment) -> None:
    # An evicted instance's coroutine is closed, its task left waiting on nothing: before,
    # each left nine objects in cycles (the task, its future, the workflow's loop, which
    # kept the task's "destroyed but pending" report), for the collector to find.
    config = WorkerConfig(max_cached_workflows=2, gc_threshold=None)
    async with env.worker([cart], config=config) as worker:
        gc.collect()
        gc.disable()
        try:
            for index in range(30):
                handle = await env.client.start_workflow(
                    cart, id=f"e{index}", task_queue=TASK_QUEUE
                )
                await _until_first_task_done(handle)
            assert worker.stats().sticky_cache_total_forced_eviction == 28
            unreachable = gc.collect()
        finally:
            gc.enable()
    assert unreachable < 14, unreachable  # 28 and more before


async def test_a_stopped_worker_disposes_of_its_cached_instances(env: Environment) -> None:
    # Their coroutines are closed as the worker stops, not left parked in reference cycles
    # for the collector (a test after this one counted them as its own).
    async with env.worker([cart]) as worker:
        handle = await env.client.start_workflow(cart, id="parked", task_queue=TASK_QUEUE)
        await _until_first_task_done(handle)
        instance = worker._workflow_runner.cache.peek((await handle.describe()).run_id)
        assert instance is not None and not instance.run.is_closed
        coroutine = instance.main_task.get_coro()
        assert coroutine.cr_frame is not None
    assert worker.stats().sticky_cache_size == 0
    assert coroutine.cr_frame is None, "closed"


async def _run_three_no_ops(env: Environment, prefix: str, count: int) -> None:
    handles = [
        await env.client.start_workflow(three_no_ops, id=f"{prefix}-{index}", task_queue=TASK_QUEUE)
        for index in range(count)
    ]
    for handle in handles:
        await handle.result()


async def test_run_ids_are_time_ordered_uuids(env: Environment) -> None:
    # UUIDv7: a store's unique run-id index grows at its end, not at a random leaf per start.
    first = await env.client.start_workflow(cart, id="first", task_queue=TASK_QUEUE)
    second = await env.client.start_workflow(cart, id="second", task_queue=TASK_QUEUE)
    ids = [(await handle.describe()).run_id for handle in (first, second)]
    assert [uuid.UUID(run_id).version for run_id in ids] == [7, 7]
    assert ids[0] < ids[1]


async def test_slots_an_operation_leased_for_a_caller_that_gave_up_go_back() -> None:
    # The store ran the commit (its attempts took two slots) but the caller was cancelled
    # meanwhile: nobody will start those attempts, so their slots must not stay taken.
    from mainspring import _core
    from mainspring.storage import _sqlite_batch

    pool = _core.SlotPool(5)
    assert pool.take(2) == 2
    gave_up: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    gave_up.cancel()
    committed = (None, ["lease", "lease"], False, None, 3)  # the shape of a CommittedTuple
    _sqlite_batch._settle([(None, gave_up, pool)], [(True, committed)])  # type: ignore[list-item]
    assert pool.free == 5
