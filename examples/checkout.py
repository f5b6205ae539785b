"""A small order-checkout app: a workflow that waits for approval, charges a card through an
activity (retried on failure), sleeps on a durable timer, and answers a status query.

Run it with ``python examples/checkout.py``. Everything is recorded in a SQLite file
(``$MAINSPRING_DB``, default ``mainspring.db`` here): no server. Run it again and it starts a
new run of the same workflow id; the earlier runs stay in the file.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

import mainspring
from mainspring import (
    ActivityContext,
    Client,
    Query,
    RetryPolicy,
    Signal,
    Worker,
    WorkflowContext,
    activity,
    workflow,
)


class Order(msgspec.Struct):
    id: str
    amount_cents: int


class Approve(Signal):
    approver: str


class Status(Query[str]):
    pass


@activity
async def charge(ctx: ActivityContext, order: Order) -> str:
    ctx.heartbeat()
    if ctx.info.attempt == 1:
        # The card processor is flaky: the first attempt fails and the retry policy retries.
        raise ConnectionError("card processor unreachable")
    return f"receipt-{order.id}-{order.amount_cents}"


@workflow
async def checkout(ctx: WorkflowContext, order: Order) -> str:
    state = "waiting for approval"
    ctx.set_query_handler(Status, lambda query: state)
    approval = await ctx.wait_signal(Approve, timeout=timedelta(days=2))
    state = f"charging (approved by {approval.approver})"
    receipt: str = await ctx.execute_activity(
        charge,
        order,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=5),
    )
    state = "cooling off"
    await ctx.sleep(timedelta(seconds=1))  # a durable timer
    state = "done"
    return receipt


async def main() -> None:
    client = Client()  # the embedded default: a SQLite file
    print("database:", client.storage.path)  # type: ignore[attr-defined]
    async with Worker(client, task_queue="orders", workflows=[checkout], activities=[charge]):
        handle = await client.start_workflow(
            checkout, Order("o-1", 995), id="order-o-1", task_queue="orders"
        )
        print("status:", await handle.query(Status()))
        await handle.signal(Approve(approver="ann"))
        print("result:", await handle.result())
        print("status:", await handle.query(Status()))
        history = await handle.history()
        print(f"history: {len(history)} events")
        for event_id, _, kind in history.outline():
            print(f"  {event_id:>3} {kind}")
    await client.close()


if __name__ == "__main__":
    mainspring.run(main())
