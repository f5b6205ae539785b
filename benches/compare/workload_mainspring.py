"""The comparison's workload on Mainspring: workflows of 3 no-op activities, worker and client
in this process, ``WorkerConfig()`` defaults, on SqliteStorage (a file in a temporary folder)
or PostgresStorage (a schema of its own, dropped afterwards). Prints one JSON line.

Run: ``python benches/compare/workload_mainspring.py --storage sqlite --workflows 200``
"""

from __future__ import annotations

import secrets
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import _harness

import mainspring
from mainspring import Client, Worker, WorkerConfig, WorkflowContext, activity, workflow
from mainspring.storage import SqliteStorage, Storage

TASK_QUEUE = "compare"


@activity
async def no_op() -> None:
    return None


@workflow
async def three_no_ops(ctx: WorkflowContext) -> None:
    for _ in range(3):
        await ctx.execute_activity(no_op, start_to_close_timeout=timedelta(seconds=30))


def _storage(options: _harness.Options, folder: Path, schema: str) -> Storage:
    if options.storage == "sqlite":
        return SqliteStorage(folder / "compare.db")  # synchronous=FULL, the default
    from mainspring.storage.postgres import PostgresStorage

    return PostgresStorage(options.postgres_dsn, schema=schema)


async def _drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def _run(options: _harness.Options, folder: Path) -> _harness.Measured:
    schema = f"compare_{secrets.token_hex(4)}"
    client = Client(_storage(options, folder, schema))
    server = None
    if options.storage == "postgres":
        server = _harness.ServerCpu(_harness.postgres_server_pid(options.postgres_dsn))

    async def start(workflow_id: str) -> Any:
        return await client.start_workflow(three_no_ops, id=workflow_id, task_queue=TASK_QUEUE)

    async def result(handle: Any) -> Any:
        return await handle.result()

    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[three_no_ops],
        activities=[no_op],
        config=WorkerConfig(),
    )
    try:
        async with worker:
            return await _harness.measure(start, result, options, server)
    finally:
        await client.close()
        if options.storage == "postgres":
            await _drop_schema(options.postgres_dsn, schema)


def main() -> None:
    options = _harness.parse_options(["sqlite", "postgres"])
    with tempfile.TemporaryDirectory(prefix="mainspring-compare-") as folder:
        measured = mainspring.run(_run(options, Path(folder)))  # uvloop, as the README's apps
    server = "PostgreSQL cluster" if options.storage == "postgres" else None
    version = _harness.package_version("mainspring")
    _harness.emit(_harness.figures("mainspring", version, options, measured, server))


if __name__ == "__main__":
    main()
