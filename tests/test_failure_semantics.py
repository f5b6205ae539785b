"""Temporal's failure semantics: only a FailureError (or a listed type) fails the run; any
other exception fails the workflow task, which is retried until the code is fixed."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from mainspring import (
    History,
    Replayer,
    RetryPolicy,
    WorkerConfig,
    WorkflowContext,
    activity,
    workflow,
)
from mainspring.errors import (
    ApplicationError,
    FailureError,
    NonDeterminismError,
    WaitTimeoutError,
    WorkflowFailedError,
    WorkflowTaskFailedError,
)
from mainspring.storage import WorkflowDescription
from mainspring.testing import time_skipping

from .conftest import TASK_QUEUE, Environment
from .workflows import SHORT, AddItem, double


@workflow(name="buggy")
async def buggy_v1(ctx: WorkflowContext, value: int) -> int:
    doubled: int = await ctx.execute_activity(double, value, start_to_close_timeout=SHORT)
    return undefined_name + doubled  # type: ignore[name-defined]  # noqa: F821


@workflow(name="buggy")
async def buggy_v2(ctx: WorkflowContext, value: int) -> int:
    doubled: int = await ctx.execute_activity(double, value, start_to_close_timeout=SHORT)
    return doubled + 1


async def _until_task_attempt(
    env: Environment, workflow_id: str, attempt: int
) -> WorkflowDescription:
    """Waits (the virtual clock skipping the retry backoff) until the run's workflow task is
    on ``attempt``."""
    handle = env.client.get_workflow_handle(workflow_id)
    async with time_skipping(env.storage):
        while (description := await handle.describe()).task_attempt < attempt:
            await asyncio.sleep(0.005)
    return description


async def test_a_name_error_fails_the_task_until_fixed_code_completes_the_run(
    env: Environment,
) -> None:
    async with env.worker([buggy_v1], [double]):
        handle = await env.client.start_workflow(buggy_v1, 20, id="b", task_queue=TASK_QUEUE)
        description = await _until_task_attempt(env, "b", 4)
    assert description.status == "RUNNING"
    assert description.last_task_failure is not None
    assert description.last_task_failure.startswith("NameError: ")
    assert "undefined_name" in description.last_task_failure
    # Fixed and redeployed: the run goes on from its history (the activity ran once).
    async with env.worker([buggy_v2], [double]), time_skipping(env.storage):
        assert await handle.result(timeout=60) == 41
    outline = (await handle.history()).outline()
    assert [kind for _, _, kind in outline].count("ActivityScheduled") == 1
    assert (await handle.describe()).task_attempt == 1


class NotABug(Exception):
    pass


@workflow(name="raises_listed")
async def raises_listed(ctx: WorkflowContext, kind: str) -> None:
    if kind == "listed":
        raise NotABug("a business outcome")
    raise KeyError(kind)


@workflow(name="raises_listed_here", failure_exception_types=[KeyError])
async def raises_listed_here(ctx: WorkflowContext) -> None:
    raise KeyError("listed by the workflow")


async def test_listed_exception_types_fail_the_run(env: Environment) -> None:
    config = WorkerConfig(workflow_failure_exception_types=[NotABug])
    async with env.worker([raises_listed, raises_listed_here], config=config):
        listed = await env.client.start_workflow(
            raises_listed, "listed", id="l", task_queue=TASK_QUEUE
        )
        with pytest.raises(WorkflowFailedError) as caught:
            await listed.result(timeout=30)
        assert caught.value.__cause__.type == "NotABug"  # type: ignore[union-attr]
        here = await env.client.start_workflow(raises_listed_here, id="h", task_queue=TASK_QUEUE)
        with pytest.raises(WorkflowFailedError):
            await here.result(timeout=30)
        other = await env.client.start_workflow(
            raises_listed, "other", id="o", task_queue=TASK_QUEUE
        )
        description = await _until_task_attempt(env, "o", 2)
    assert description.status == "RUNNING"
    assert (description.last_task_failure or "").startswith("KeyError")
    await other.terminate("done")


@workflow(name="waits_for_approval")
async def waits_for_approval(ctx: WorkflowContext) -> str:
    try:
        await ctx.wait_signal(AddItem, timeout=timedelta(hours=1))
    except TimeoutError as error:  # the builtin: still catches it
        assert isinstance(error, FailureError)
    await ctx.wait_signal(AddItem, timeout=timedelta(hours=1))  # unhandled: fails the run
    return "never"


async def test_an_unhandled_wait_timeout_fails_the_run_and_a_handled_one_is_a_timeout_error(
    env: Environment,
) -> None:
    async with env.worker([waits_for_approval]):
        handle = await env.client.start_workflow(waits_for_approval, id="w", task_queue=TASK_QUEUE)
        async with time_skipping(env.storage):
            with pytest.raises(WorkflowFailedError) as caught:
                await handle.result(timeout=30)
    assert caught.value.__cause__.type == WaitTimeoutError.__name__  # type: ignore[union-attr]
    assert issubclass(WaitTimeoutError, TimeoutError)


@workflow(name="bad_signal_handler")
async def bad_signal_handler(ctx: WorkflowContext) -> list[str]:
    items: list[str] = []

    def add(signal: AddItem) -> None:
        if signal.item == "bug":
            raise ZeroDivisionError("a bug in a handler")
        if signal.item == "refuse":
            raise ApplicationError("refused", non_retryable=True)
        items.append(signal.item)

    ctx.set_signal_handler(AddItem, add)
    await ctx.wait_condition(lambda: "done" in items)
    return items


async def test_a_signal_handler_bug_fails_the_task_and_a_failure_error_fails_the_run(
    env: Environment,
) -> None:
    async with env.worker([bad_signal_handler]):
        handle = await env.client.start_workflow(bad_signal_handler, id="s", task_queue=TASK_QUEUE)
        await handle.signal(AddItem(item="bug"))
        description = await _until_task_attempt(env, "s", 2)
        assert description.status == "RUNNING"
        assert (description.last_task_failure or "").startswith("ZeroDivisionError")
        await handle.signal(AddItem(item="refuse"))
        # Still failing on the bug (the history has both signals): terminate and start anew.
        await handle.terminate("replaced")
        again = await env.client.start_workflow(bad_signal_handler, id="s2", task_queue=TASK_QUEUE)
        await again.signal(AddItem(item="refuse"))
        with pytest.raises(WorkflowFailedError) as caught:
            await again.result(timeout=30)
    assert caught.value.__cause__.type == "ApplicationError"  # type: ignore[union-attr]


@workflow(name="keeps_listening")
async def keeps_listening(ctx: WorkflowContext) -> list[str]:
    items: list[str] = []
    ctx.set_signal_handler(AddItem, lambda signal: items.append(signal.item))
    await ctx.wait_condition(lambda: "done" in items)
    return items


async def test_a_signal_whose_payload_does_not_decode_is_dropped_not_fatal(
    env: Environment, caplog: pytest.LogCaptureFixture
) -> None:
    async with env.worker([keeps_listening]):
        handle = await env.client.start_workflow(keeps_listening, id="k", task_queue=TASK_QUEUE)
        await env.client.storage.signal_workflow("k", "AddItem", b'{"item": 7}')
        await handle.signal(AddItem(item="a"))
        await handle.signal(AddItem(item="done"))
        assert await handle.result(timeout=30) == ["a", "done"]
    dropped = [record for record in caplog.records if "dropped signal" in record.getMessage()]
    assert len(dropped) == 1
    assert "does not decode" in dropped[0].getMessage()
    Replayer(workflows=[keeps_listening]).replay(await handle.history())


@activity
async def rate_limited(ctx: object) -> str:
    raise ApplicationError("slow down", next_retry_delay=timedelta(minutes=7))


@workflow(name="retries_later")
async def retries_later(ctx: WorkflowContext) -> None:
    await ctx.execute_activity(
        rate_limited,
        start_to_close_timeout=SHORT,
        retry_policy=RetryPolicy(maximum_attempts=2, initial_interval=timedelta(seconds=1)),
    )


async def test_next_retry_delay_overrides_the_policy(env: Environment) -> None:
    async with env.worker([retries_later], [rate_limited]):
        handle = await env.client.start_workflow(retries_later, id="r", task_queue=TASK_QUEUE)
        before = env.clock.now_ms()
        async with time_skipping(env.storage):
            with pytest.raises(WorkflowFailedError):
                await handle.result(timeout=30)
    # Two attempts, seven minutes apart (the policy alone would wait one second).
    assert 7 * 60_000 <= env.clock.now_ms() - before < 8 * 60_000


@workflow(name="changes")
async def changes_v1(ctx: WorkflowContext) -> int:
    first: int = await ctx.execute_activity(double, 1, start_to_close_timeout=SHORT)
    await ctx.wait_signal(AddItem)
    return first


@workflow(name="changes")
async def changes_v2(ctx: WorkflowContext) -> int:
    await ctx.sleep(5)  # where v1 scheduled an activity: a divergence on replay
    await ctx.wait_signal(AddItem)
    return 0


async def test_a_divergence_fails_the_task_unless_listed_then_it_fails_the_run(
    env: Environment,
) -> None:
    for workflow_id in ("unlisted", "listed"):
        async with env.worker([changes_v1], [double]):
            handle = await env.client.start_workflow(
                changes_v1, id=workflow_id, task_queue=TASK_QUEUE
            )
            while (await handle.describe()).history_length < 5:  # waiting for the signal
                await asyncio.sleep(0.005)
    # Redeployed with code that no longer matches the histories.
    async with env.worker([changes_v2]):
        await env.client.get_workflow_handle("unlisted").signal(AddItem(item="go"))
        description = await _until_task_attempt(env, "unlisted", 2)
    assert description.status == "RUNNING"
    assert (description.last_task_failure or "").startswith("NonDeterminismError")
    config = WorkerConfig(workflow_failure_exception_types=[NonDeterminismError])
    async with env.worker([changes_v2], config=config):
        listed = env.client.get_workflow_handle("listed")
        await listed.signal(AddItem(item="go"))
        with pytest.raises(WorkflowFailedError) as caught:
            await listed.result(timeout=30)
    assert caught.value.__cause__.type == "NonDeterminismError"  # type: ignore[union-attr]
    kinds = [kind for _, _, kind in (await listed.history()).outline()]
    assert kinds[-2:] == ["WorkflowTaskCompleted", "WorkflowFailed"]


async def test_dropped_signals_are_counted_in_describe(env: Environment) -> None:
    async with env.worker([keeps_listening]):
        handle = await env.client.start_workflow(keeps_listening, id="d", task_queue=TASK_QUEUE)
        for text in (b'{"item": 1}', b"not json"):
            await env.client.storage.signal_workflow("d", "AddItem", text)
        await handle.signal(AddItem(item="done"))
        assert await handle.result(timeout=30) == ["done"]
    assert (await handle.describe()).dropped_signals == 2


@workflow(name="raises_key_error")
async def raises_key_error(ctx: WorkflowContext) -> None:
    raise KeyError("a bug")


async def test_histories_recorded_before_the_rule_replay_as_they_ran(env: Environment) -> None:
    """A run that a plain exception failed (as every engine before TASK_FAILURES did) keeps
    replaying: its tasks' flags say which rule they ran under."""
    config = WorkerConfig(workflow_failure_exception_types=[KeyError])
    async with env.worker([raises_key_error], config=config):
        handle = await env.client.start_workflow(raises_key_error, id="k", task_queue=TASK_QUEUE)
        with pytest.raises(WorkflowFailedError):
            await handle.result(timeout=30)
    recorded = json.loads((await handle.history()).to_json())
    # Under today's rule, without KeyError listed, that code fails its task, not its run: the
    # recorded WorkflowFailed is no longer what it does.
    with pytest.raises(WorkflowTaskFailedError, match="KeyError"):
        Replayer(workflows=[raises_key_error]).replay(History.from_json(json.dumps(recorded)))
    # Recorded before the rule (flags 0), the same history replays as it ran.
    for event in recorded["events"]:
        if event["type"] == "WorkflowTaskCompleted":
            event["attributes"]["flags"] = 0
    Replayer(workflows=[raises_key_error]).replay(History.from_json(json.dumps(recorded)))
