"""Writes a golden SQLite file with work in flight: ``python -m tests.sqlite_files.record OUT``.

``schema-4-in-flight.db`` here was written this way by the release whose SQLite schema was
version 4 (before the rules moved into the core), so that later releases prove they open it,
migrate it and finish its work (`test_sqlite_golden_files.py`). It runs on the release that
writes the file (it reads the file through that release's storage internals). Never rewrite a
golden file: add one per schema version.

What it holds, all on a virtual clock at 2030-01-01T00:00:00Z:
- ``sequential`` (input 3), on task queue ``idle``: its first activity queued, never run;
- ``retrying`` (input 3), on ``tests``: its activity's first attempt failed, the retry
  waiting for its backoff (a last failure stored);
- ``sleeper`` (input 3600), on ``tests``: a one-hour timer pending;
- ``heartbeating`` (input 21), on ``busy``: its activity's attempt running (leased, then a
  heartbeat with details), its worker gone;
- ``leased`` (``sleeper``, input 60), on ``parked``: its first workflow task leased for a minute,
  its worker gone.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mainspring import Client, Worker
from mainspring.storage import SqliteStorage, VirtualClock

from ..workflows import ALL_WORKFLOWS, flaky, heartbeating, retrying, sequential, sleeper


async def _first_attempt_failed(storage: SqliteStorage) -> bool:
    rows = await storage._database.submit(  # type: ignore[call-arg, arg-type]
        lambda connection: connection.execute("SELECT attempt FROM activities").fetchall()
    )
    return any(attempt == 2 for (attempt,) in rows)


async def record(path: Path) -> None:
    storage = SqliteStorage(path, clock=VirtualClock())
    client = Client(storage)
    async with (
        Worker(client, task_queue="idle", workflows=ALL_WORKFLOWS),
        Worker(client, task_queue="tests", workflows=ALL_WORKFLOWS, activities=[flaky]),
    ):
        await client.start_workflow(sequential, 3, id="sequential", task_queue="idle")
        await client.start_workflow(retrying, 3, id="retrying", task_queue="tests")
        await client.start_workflow(sleeper, 3600, id="sleeper", task_queue="tests")
        while not await _first_attempt_failed(storage):
            await asyncio.sleep(0.01)
        await client.start_workflow(heartbeating, 21, id="heartbeating", task_queue="busy")
        for workflow_id in ("sequential", "retrying", "sleeper"):
            while (await client.get_workflow_handle(workflow_id).describe()).history_length < 3:
                await asyncio.sleep(0.01)
    # A worker that took work and died: an attempt running, a workflow task leased.
    async with Worker(client, task_queue="busy", workflows=ALL_WORKFLOWS):
        while (await client.get_workflow_handle("heartbeating").describe()).history_length < 3:
            await asyncio.sleep(0.01)
    (attempt,) = await storage.poll_activity_tasks("busy", 1)
    await storage.heartbeat_activity_task(attempt, b'{"progress":1}')
    await client.start_workflow(sleeper, 60, id="leased", task_queue="parked")
    (_leased,) = await storage.poll_workflow_tasks("parked", 60_000, 1)
    await client.close()


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
