"""The workflow app the crash-recovery test runs in a worker subprocess and SIGKILLs.

Run: ``python -m tests.recovery_app DATABASE`` (a SQLite file or a storage URL) — a worker
for task queue ``recovery`` until killed. Every attempt of every activity appends a line to
``$RECOVERY_ATTEMPT_LOG``, so the test can see that activities ran at least once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

import mainspring
from mainspring import (
    ActivityContext,
    Client,
    RetryPolicy,
    Signal,
    Worker,
    WorkerConfig,
    WorkflowContext,
    activity,
    workflow,
)
from mainspring.errors import ApplicationError
from mainspring.storage.urls import open_storage

TASK_QUEUE = "recovery"
ATTEMPT_LOG = os.environ.get("RECOVERY_ATTEMPT_LOG", "")
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=0)


class Bump(Signal):
    amount: int


@activity
async def add(ctx: ActivityContext, value: int) -> int:
    if ATTEMPT_LOG:
        with open(ATTEMPT_LOG, "a") as log:
            log.write(f"{ctx.info.workflow_id} {ctx.info.activity_id} {ctx.info.attempt}\n")
    if value == 2 and ctx.info.attempt == 1:
        # Every workflow's third activity fails once: the storms retry as well as recover.
        raise ApplicationError("flaky the first time")
    return value + 1


@workflow
async def mixed(ctx: WorkflowContext, number: int) -> int:
    """Activities, a timer, parallel activities and (for every third) a signal."""
    total: int = await ctx.execute_activity(
        add, number, start_to_close_timeout=timedelta(seconds=2), retry_policy=RETRY
    )
    await ctx.sleep(timedelta(milliseconds=50 * (number % 5)))
    if number % 3 == 0:
        bump = await ctx.wait_signal(Bump)
        total += bump.amount
    limit = timedelta(seconds=2)
    pair = await asyncio.gather(
        ctx.execute_activity(add, 1, start_to_close_timeout=limit, retry_policy=RETRY),
        ctx.execute_activity(add, 2, start_to_close_timeout=limit, retry_policy=RETRY),
    )
    return total + sum(pair)


def expected(number: int) -> int:
    bump = number if number % 3 == 0 else 0
    return (number + 1) + bump + 2 + 3


async def work(database: str) -> None:
    # A SQLite file or any storage URL (the scale-out storms run this on PostgreSQL).
    storage = open_storage(database, poll_interval=timedelta(milliseconds=20))
    config = WorkerConfig(workflow_task_timeout=timedelta(seconds=1))
    worker = Worker(
        Client(storage), task_queue=TASK_QUEUE, workflows=[mixed], activities=[add], config=config
    )
    await worker.run()


if __name__ == "__main__":
    mainspring.run(work(sys.argv[1]))
