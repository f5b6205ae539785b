"""Writes the schema-5 golden SQLite file:
``python -m tests.sqlite_files.record_schema_5 OUT [EXPORTS]``.

``schema-5-in-flight.db`` was written this way by the last release whose history rows were
postcard (history format 1, SQLite schema 5), so that later releases prove they open it,
rewrite its rows, replay its runs and carry on (`test_sqlite_golden_files.py`). Never rewrite
it: add a file per schema version. It uses only public API, on a virtual clock at
2030-01-01T00:00:00Z:

- ``checkout-done`` (``checkout``): completed (an activity, a signal, a timer in its history);
- ``failing-done`` (``failing``, "declined"): failed (an activity error recorded);
- ``cart``: two ``AddItem`` signals applied and waiting for ``checkout``;
- ``sleeper`` (input 3600): a one-hour timer pending;
- ``sequential`` (input 3), on task queue ``idle``: its first activity queued, never run.

With ``EXPORTS`` (a folder) it also exports the two closed runs' histories there as that
release wrote them, in both forms: ``<id>.msh`` (``History.encoded``, format 1) and
``<id>.json`` (``History.to_json()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from pathlib import Path

from mainspring import Client, Worker
from mainspring.storage import SqliteStorage, VirtualClock
from mainspring.testing import time_skipping

from ..workflows import (
    ALL_ACTIVITIES,
    ALL_WORKFLOWS,
    AddItem,
    Approve,
    Items,
    Order,
    cart,
    checkout,
    failing,
    sequential,
    sleeper,
)


async def record(path: Path, exports: Path | None) -> None:
    storage = SqliteStorage(path, clock=VirtualClock())
    client = Client(storage)
    async with (
        Worker(client, task_queue="tests", workflows=ALL_WORKFLOWS, activities=ALL_ACTIVITIES),
        Worker(client, task_queue="idle", workflows=ALL_WORKFLOWS),
    ):
        done = await client.start_workflow(
            checkout, Order(id="o-1", amount_cents=500), id="checkout-done", task_queue="tests"
        )
        await done.signal(Approve(approver="ops"))
        async with time_skipping(storage):
            await done.result(timeout=30)
            failed = await client.start_workflow(
                failing, "declined", id="failing-done", task_queue="tests"
            )
            with contextlib.suppress(Exception):
                await failed.result(timeout=30)
        basket = await client.start_workflow(cart, id="cart", task_queue="tests")
        await basket.signal(AddItem(item="apple"))
        await basket.signal(AddItem(item="pear"))
        while await basket.query(Items()) != ["apple", "pear"]:
            await asyncio.sleep(0.01)
        await client.start_workflow(sleeper, 3600, id="sleeper", task_queue="tests")
        await client.start_workflow(sequential, 3, id="sequential", task_queue="idle")
        for workflow_id in ("sleeper", "sequential"):
            while (await client.get_workflow_handle(workflow_id).describe()).history_length < 3:
                await asyncio.sleep(0.01)
    if exports is not None:
        exports.mkdir(parents=True, exist_ok=True)
        for workflow_id in ("checkout-done", "failing-done"):
            history = await client.get_workflow_handle(workflow_id).history()
            (exports / f"{workflow_id}.msh").write_bytes(history.encoded)
            (exports / f"{workflow_id}.json").write_text(history.to_json() + "\n")
    await client.close()
    # One self-contained file: fold the write-ahead log in.
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None))
