"""Property tests: the history codec round-trips, and random workflows replay exactly."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mainspring import Client, History, Replayer, Worker, WorkerConfig, WorkflowContext, workflow
from mainspring.storage import MemoryStorage, SqliteStorage, VirtualClock
from mainspring.storage._adapter import AdaptedStorage
from mainspring.testing import time_skipping

from .dict_tables import dict_storage
from .workflows import SHORT, AddItem, double

# History codec ------------------------------------------------------------------------------

payloads = st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode())
names = st.text(min_size=1, max_size=12)
failures = st.fixed_dictionaries(
    {
        "message": st.text(max_size=20),
        "error_type": names,
        "non_retryable": st.booleans(),
        "details": payloads,
        "stack_trace": st.text(max_size=20),
        "cause": st.none(),
    }
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("completed"), payloads),
        st.tuples(st.just("failed"), failures),
        st.tuples(st.just("timer"), st.integers(0, 2**40)),
        st.tuples(st.just("signal"), st.tuples(names, payloads)),
    ),
    max_size=12,
)


def _history_json(step_list: list[tuple[str, Any]], start_ms: int) -> str:
    events: list[dict[str, Any]] = []

    def add(kind: str, **attributes: Any) -> int:
        events.append(
            {
                "event_id": len(events) + 1,
                "timestamp_ms": start_ms + len(events),
                "type": kind,
                "attributes": attributes,
            }
        )
        return len(events)

    add("WorkflowStarted", workflow_type="t", workflow_id="w", run_id="r", task_queue="q",
        input="bnVsbA==")  # fmt: skip
    options = {
        "task_queue": "q", "schedule_to_close_ms": None, "schedule_to_start_ms": None,
        "start_to_close_ms": 5, "heartbeat_ms": None,
        "retry_policy": {"initial_interval_ms": 1, "backoff_coefficient": 2.0,
                         "maximum_interval_ms": None, "maximum_attempts": 0,
                         "non_retryable_error_types": []},
    }  # fmt: skip
    for seq, (kind, value) in enumerate(step_list, start=1):
        add("WorkflowTaskCompleted", seen_event_id=len(events), flags=0)
        if kind == "timer":
            started = add("TimerStarted", seq=seq, duration_ms=value)
            add("TimerFired", started_event_id=started)
        elif kind == "signal":
            add("WorkflowSignaled", signal_name=value[0], input=value[1])
        else:
            scheduled = add("ActivityScheduled", seq=seq, activity_type="a", input=value
                            if kind == "completed" else "bnVsbA==", options=options)  # fmt: skip
            if kind == "completed":
                add("ActivityCompleted", scheduled_event_id=scheduled, result=value, attempt=1)
            else:
                add("ActivityFailed", scheduled_event_id=scheduled, failure=value, attempt=3)
    return json.dumps({"format_version": 1, "events": events})


@given(steps, st.integers(0, 2**50))
def test_history_json_and_bytes_round_trip(step_list: list[tuple[str, Any]], start: int) -> None:
    history = History.from_json(_history_json(step_list, start))
    exported = history.to_json()
    assert History.from_json(exported) == history
    assert History(history.encoded).to_json() == exported
    assert json.loads(exported)["events"] == json.loads(_history_json(step_list, start))["events"]


# Random workflows ---------------------------------------------------------------------------

Step = tuple[str, int]


@workflow(name="program")
async def program(ctx: WorkflowContext, plan: list[Step]) -> list[str]:
    """Interprets a random plan of steps; every kind of command and job appears."""
    results: list[str] = []
    for kind, argument in plan:
        if kind == "activity":
            results.append(
                str(await ctx.execute_activity(double, argument, start_to_close_timeout=SHORT))
            )
        elif kind == "sleep":
            await ctx.sleep(argument)
            results.append("slept")
        elif kind == "parallel":
            calls = [
                ctx.execute_activity(double, index, start_to_close_timeout=SHORT)
                for index in range(argument)
            ]
            values = await asyncio.gather(*calls)
            results.append(",".join(map(str, values)))
        elif kind == "signal":
            results.append((await ctx.wait_signal(AddItem)).item)
        elif kind == "cancelled_timer":
            handle = ctx.start_activity(double, argument, start_to_close_timeout=SHORT)
            try:
                await ctx.wait_condition(handle.done, timeout=3600)
            except TimeoutError:
                results.append("timeout")
            results.append(str(await handle))
    return results


plans = st.lists(
    st.one_of(
        st.tuples(st.just("activity"), st.integers(0, 100)),
        st.tuples(st.just("sleep"), st.integers(1, 10**6)),
        st.tuples(st.just("parallel"), st.integers(1, 3)),
        st.tuples(st.just("signal"), st.just(0)),
        st.tuples(st.just("cancelled_timer"), st.integers(0, 9)),
    ),
    max_size=8,
)


async def _run(plan: list[Step], cache_size: int) -> tuple[list[str], History]:
    storage = MemoryStorage(clock=VirtualClock())
    client = Client(storage)
    handle = await client.start_workflow(program, plan, id="p", task_queue="q")
    for index, (kind, _) in enumerate(plan):
        if kind == "signal":
            await handle.signal(AddItem(item=f"item-{index}"))
    config = WorkerConfig(max_cached_workflows=cache_size)
    async with (
        Worker(client, task_queue="q", workflows=[program], activities=[double], config=config),
        time_skipping(storage),
    ):
        result = await handle.result()
    return result, await handle.history()


@given(plans)
def test_random_workflows_replay_with_identical_commands(plan: list[Step]) -> None:
    cached_result, cached_history = asyncio.run(_run(plan, cache_size=100))
    uncached_result, uncached_history = asyncio.run(_run(plan, cache_size=0))
    assert cached_result == uncached_result
    replayer = Replayer(workflows=[program])
    # Replay checks every recorded command against the one the code issues now.
    replayer.replay(cached_history)
    replayer.replay(uncached_history)


async def _run_live(
    storage: SqliteStorage | AdaptedStorage, plan: list[Step], cache_size: int
) -> tuple[list[str], History]:
    """The plan with the worker already running, so a cached run is started and advanced by
    fused commits, and signals land while its activities run (the fused commit then finds the
    run moved on and records the result alone)."""
    client = Client(storage)
    config = WorkerConfig(max_cached_workflows=cache_size)
    async with (
        Worker(client, task_queue="q", workflows=[program], activities=[double], config=config),
        time_skipping(storage),
    ):
        handle = await client.start_workflow(program, plan, id="p", task_queue="q")
        for index, (kind, _) in enumerate(plan):
            if kind == "signal":
                await handle.signal(AddItem(item=f"item-{index}"))
        result = await handle.result()
    history = await handle.history()
    await client.close()
    return result, history


async def _run_live_on_sqlite(plan: list[Step], cache_size: int) -> tuple[list[str], History]:
    with tempfile.TemporaryDirectory() as folder:
        storage = SqliteStorage(Path(folder) / "plan.db", clock=VirtualClock())
        return await _run_live(storage, plan, cache_size)


@settings(max_examples=15)
@given(plans)
def test_random_workflows_on_sqlite_give_the_same_results_fused_or_not(plan: list[Step]) -> None:
    fused_result, fused_history = asyncio.run(_run_live_on_sqlite(plan, cache_size=100))
    plain_result, plain_history = asyncio.run(_run_live_on_sqlite(plan, cache_size=0))
    memory_result, _ = asyncio.run(_run(plan, cache_size=100))
    assert fused_result == plain_result == memory_result
    replayer = Replayer(workflows=[program])
    replayer.replay(fused_history)
    replayer.replay(plain_history)


async def _run_live_on_the_python_adapter(
    plan: list[Step], cache_size: int
) -> tuple[list[str], History]:
    """On a store written in Python (`dict_tables`: tables in dicts, every call a round trip)."""
    return await _run_live(dict_storage(VirtualClock()), plan, cache_size)


@settings(max_examples=15)
@given(plans)
def test_random_workflows_on_a_python_store_give_the_results_memory_gives(
    plan: list[Step],
) -> None:
    fused_result, fused_history = asyncio.run(_run_live_on_the_python_adapter(plan, 100))
    plain_result, plain_history = asyncio.run(_run_live_on_the_python_adapter(plan, 0))
    memory_result, _ = asyncio.run(_run(plan, cache_size=100))
    assert fused_result == plain_result == memory_result
    replayer = Replayer(workflows=[program])
    replayer.replay(fused_history)
    replayer.replay(plain_history)
