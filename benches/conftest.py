"""Shared pieces of the benchmarks: synthetic histories and the workflows they replay."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from mainspring import History, WorkflowContext, activity, workflow

_NULL = base64.b64encode(b"null").decode()
_ONE = base64.b64encode(b"1").decode()
_OPTIONS: dict[str, object] = {
    "task_queue": "bench",
    "schedule_to_close_ms": None,
    "schedule_to_start_ms": None,
    "start_to_close_ms": 30_000,
    "heartbeat_ms": None,
    "retry_policy": {
        "initial_interval_ms": 1000,
        "backoff_coefficient": 2.0,
        "maximum_interval_ms": None,
        "maximum_attempts": 0,
        "non_retryable_error_types": [],
    },
}


@activity
async def step() -> int:
    return 1


@activity
async def no_op() -> None:
    return None


@workflow
async def sequential_steps(ctx: WorkflowContext, count: int) -> int:
    total = 0
    for _ in range(count):
        total += await ctx.execute_activity(step, start_to_close_timeout=timedelta(seconds=30))
    return total


@workflow
async def three_no_ops(ctx: WorkflowContext) -> None:
    for _ in range(3):
        await ctx.execute_activity(no_op, start_to_close_timeout=timedelta(seconds=30))


def sequential_history(count: int) -> History:
    """The history `sequential_steps(count)` records live: one task per activity result."""
    events: list[dict[str, object]] = []

    def add(kind: str, **attributes: object) -> int:
        events.append(
            {"event_id": len(events) + 1, "timestamp_ms": 1_700_000_000_000, "type": kind,
             "attributes": attributes}
        )  # fmt: skip
        return len(events)

    add("WorkflowStarted", workflow_type="sequential_steps", workflow_id="bench", run_id="r",
        task_queue="bench", input=base64.b64encode(str(count).encode()).decode())  # fmt: skip
    add("WorkflowTaskCompleted", seen_event_id=1, flags=0)
    scheduled = add("ActivityScheduled", seq=1, activity_type="step", input=_NULL, options=_OPTIONS)
    for seq in range(1, count + 1):
        add("ActivityCompleted", scheduled_event_id=scheduled, result=_ONE, attempt=1)
        add("WorkflowTaskCompleted", seen_event_id=len(events), flags=0)
        if seq == count:
            add("WorkflowCompleted", result=base64.b64encode(str(count).encode()).decode())
        else:
            scheduled = add(
                "ActivityScheduled", seq=seq + 1, activity_type="step", input=_NULL,
                options=_OPTIONS,
            )  # fmt: skip
    return History.from_json(json.dumps({"format_version": 1, "events": events}))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``big`` benchmarks (minutes each, a cached 1 GB file) run only when ``-m`` names
    them."""
    if "big" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="a big benchmark: select it with -m big")
    for item in items:
        if "big" in item.keywords:
            item.add_marker(skip)
