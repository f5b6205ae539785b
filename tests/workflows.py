"""Workflows and activities the tests (and the golden histories) run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import msgspec

from mainspring import (
    ActivityContext,
    Query,
    RetryPolicy,
    Signal,
    WorkflowContext,
    activity,
    workflow,
)
from mainspring.errors import ActivityError, ApplicationError

SHORT = timedelta(seconds=30)


class Order(msgspec.Struct):
    id: str
    amount_cents: int


@dataclass
class Receipt:
    order_id: str
    charged: int


class Approve(Signal):
    approver: str


class AddItem(Signal):
    item: str


class Status(Query[str]):
    pass


class Items(Query[list[str]]):
    pass


@activity
async def charge(ctx: ActivityContext, order: Order) -> Receipt:
    ctx.heartbeat()
    return Receipt(order.id, order.amount_cents)


@activity
async def double(value: int) -> int:
    return value * 2


@activity
def blocking_double(value: int) -> int:
    """A plain def: runs in the worker's thread pool."""
    return value * 2


@activity(name="no-op")
async def no_op() -> None:
    return None


@workflow
async def checkout(ctx: WorkflowContext, order: Order) -> Receipt:
    state = "waiting"
    ctx.set_query_handler(Status, lambda query: state)
    approval = await ctx.wait_signal(Approve, timeout=timedelta(days=2))
    state = f"charging, approved by {approval.approver}"
    receipt: Receipt = await ctx.execute_activity(
        charge, order, start_to_close_timeout=SHORT, retry_policy=RetryPolicy(maximum_attempts=5)
    )
    await ctx.sleep(timedelta(hours=1))
    state = "done"
    return receipt


@workflow
async def sequential(ctx: WorkflowContext, count: int) -> int:
    total = 0
    for index in range(count):
        total += await ctx.execute_activity(double, index, start_to_close_timeout=SHORT)
    return total


@workflow
async def parallel(ctx: WorkflowContext, count: int) -> list[int]:
    results = await asyncio.gather(
        *(
            ctx.execute_activity(blocking_double, index, start_to_close_timeout=SHORT)
            for index in range(count)
        )
    )
    return list(results)


@workflow
async def three_no_ops(ctx: WorkflowContext) -> None:
    for _ in range(3):
        await ctx.execute_activity(no_op, start_to_close_timeout=SHORT)


@workflow
async def sleeper(ctx: WorkflowContext, seconds: float) -> str:
    before = ctx.now()
    await ctx.sleep(seconds)
    return f"{(ctx.now() - before).total_seconds():.0f}"


@workflow
async def cart(ctx: WorkflowContext) -> list[str]:
    items: list[str] = []

    def add(signal: AddItem) -> None:
        items.append(signal.item)

    ctx.set_signal_handler(AddItem, add)
    ctx.set_query_handler(Items, lambda query: list(items))
    await ctx.wait_condition(lambda: "checkout" in items)
    return items


@workflow
async def deterministic_values(ctx: WorkflowContext) -> list[str]:
    first = [str(ctx.uuid4()), f"{ctx.random():.12f}", ctx.now().isoformat()]
    await ctx.sleep(1)
    return [*first, str(ctx.uuid4()), ctx.now().isoformat()]


@activity
async def flaky(ctx: ActivityContext, succeed_on: int) -> int:
    if ctx.info.attempt < succeed_on:
        ctx.heartbeat({"reached": ctx.info.attempt})
        raise ApplicationError(f"attempt {ctx.info.attempt} failed", details={"n": 1})
    return ctx.info.attempt


@activity
async def always_fails(message: str) -> None:
    raise ApplicationError(message, type="PaymentDeclined", non_retryable=True)


@workflow
async def retrying(ctx: WorkflowContext, succeed_on: int) -> int:
    attempt: int = await ctx.execute_activity(
        flaky,
        succeed_on,
        start_to_close_timeout=SHORT,
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
    )
    return attempt


@workflow
async def failing(ctx: WorkflowContext, message: str) -> None:
    try:
        await ctx.execute_activity(always_fails, message, start_to_close_timeout=SHORT)
    except ActivityError as error:
        raise ApplicationError("checkout failed", type="CheckoutFailed") from error


@activity
async def reports_progress(ctx: ActivityContext, value: int) -> int:
    ctx.heartbeat({"value": value})
    return value * 2


@workflow
async def heartbeating(ctx: WorkflowContext, value: int) -> int:
    doubled: int = await ctx.execute_activity(
        reports_progress,
        value,
        start_to_close_timeout=SHORT,
        heartbeat_timeout=timedelta(seconds=10),
    )
    return doubled


@workflow
async def cancellable(ctx: WorkflowContext) -> str:
    try:
        await ctx.sleep(timedelta(days=30))
    except asyncio.CancelledError:
        await ctx.execute_activity(double, 1, start_to_close_timeout=SHORT)
        raise
    return "slept"


ALL_WORKFLOWS = [
    checkout,
    sequential,
    parallel,
    three_no_ops,
    sleeper,
    cart,
    deterministic_values,
    retrying,
    failing,
    cancellable,
    heartbeating,
]
ALL_ACTIVITIES = [
    charge,
    double,
    blocking_double,
    no_op,
    flaky,
    always_fails,
    reports_progress,
]
