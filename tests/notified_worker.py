"""A worker process for the cross-process wake-up test: ``python -m tests.notified_worker URL``
runs a worker that polls only once a minute (its storage too), so what it does within seconds
it was woken to do by a notification. Prints "ready" once it is listening."""

from __future__ import annotations

import sys
from datetime import timedelta

import mainspring
from mainspring import ActivityContext, Client, Worker, WorkerConfig, WorkflowContext, activity
from mainspring import workflow as workflow_decorator
from mainspring.storage.postgres import PostgresStorage
from mainspring.storage.urls import postgres_dsn

MINUTE = timedelta(seconds=60)


@activity(name="notified_triple")
async def triple(ctx: ActivityContext, value: int) -> int:
    return value * 3


@workflow_decorator(name="notified_triples")
async def triples(ctx: WorkflowContext, value: int) -> int:
    for _ in range(2):
        value = await ctx.execute_activity(
            triple, value, start_to_close_timeout=timedelta(seconds=30)
        )
    return value


async def work(url: str) -> None:
    dsn, options = postgres_dsn(url)
    storage = await PostgresStorage(dsn, poll_interval=MINUTE, **options).connect()
    worker = Worker(
        Client(storage),
        task_queue="notified",
        workflows=[triples],
        activities=[triple],
        config=WorkerConfig(poll_interval=MINUTE),
    )
    print("ready", flush=True)
    await worker.run()  # until the test kills the process


if __name__ == "__main__":
    mainspring.run(work(sys.argv[1]))
