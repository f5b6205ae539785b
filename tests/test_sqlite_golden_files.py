"""SQLite files written by earlier releases open, migrate and finish their work.

Each golden file in `sqlite_files/` was written by the release whose schema it carries (see
`sqlite_files/record.py`); they are never rewritten. This one has an activity queued, an
activity waiting to retry after a failed attempt, an attempt running (heartbeated) and a
workflow task leased by workers that are gone, and a timer pending, in the layout of schema
version 4: activities keyed by a number, retry policies and failures in MessagePack.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mainspring import Client, History, Replayer, Worker, _core
from mainspring.storage import SqliteStorage, VirtualClock
from mainspring.testing import time_skipping

from .workflows import ALL_ACTIVITIES, ALL_WORKFLOWS, AddItem, Items

GOLDEN = Path(__file__).parent / "sqlite_files"
EXPORTS = Path(__file__).parent / "histories" / "format-1"


async def test_a_schema_4_file_with_work_in_flight_is_migrated_and_finishes_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in-flight.db"
    shutil.copy(GOLDEN / "schema-4-in-flight.db", path)
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
    storage = SqliteStorage(path, clock=clock)
    ((version,),) = storage._database.execute(
        "SELECT value FROM mainspring_meta WHERE key = 'schema_version'"
    )
    assert int(version) == _core.SQLITE_SCHEMA_VERSION
    client = Client(storage)
    retry = await client.get_workflow_handle("retrying").describe()
    assert (retry.status, retry.history_length) == ("RUNNING", 3)
    queues = ("idle", "tests", "busy", "parked")
    workers = [
        Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS, activities=ALL_ACTIVITIES)
        for queue in queues
    ]
    for worker in workers:
        await worker.__aenter__()
    try:
        # The running attempt's worker is gone: its heartbeat timeout (10 s after its last
        # heartbeat) ends the attempt, which is retried; the leased task lapses after a minute.
        clock.advance(timedelta(seconds=61))
        async with time_skipping(storage):
            assert await client.get_workflow_handle("sequential").result(timeout=30) == 6
            # The attempt that failed before the upgrade counts: the third one succeeds.
            assert await client.get_workflow_handle("retrying").result(timeout=30) == 3
            assert await client.get_workflow_handle("sleeper").result(timeout=30) == "3600"
            assert await client.get_workflow_handle("heartbeating").result(timeout=30) == 42
            assert await client.get_workflow_handle("leased").result(timeout=30) == "60"
    finally:
        for worker in workers:
            await worker.__aexit__(None, None, None)
    for workflow_id in ("sequential", "retrying", "sleeper", "heartbeating", "leased"):
        history = await client.get_workflow_handle(workflow_id).history()
        assert history.outline()[-1][2] == "WorkflowCompleted"
    beat = json.loads((await client.get_workflow_handle("heartbeating").history()).to_json())
    # The attempt that was running before the upgrade counts too: the second one completed.
    (completed,) = [
        event["attributes"] for event in beat["events"] if event["type"] == "ActivityCompleted"
    ]
    assert completed["attempt"] == 2
    await client.close()


async def test_a_schema_5_file_of_format_1_rows_replays_and_carries_on(tmp_path: Path) -> None:
    """Written by the last release whose history rows were postcard (history format 1)."""
    path = tmp_path / "schema-5.db"
    shutil.copy(GOLDEN / "schema-5-in-flight.db", path)
    # Where the recording clock stood (an hour of skipped time into 2030).
    clock = VirtualClock(datetime(2030, 1, 1, 1, tzinfo=timezone.utc))
    storage = SqliteStorage(path, clock=clock)
    ((version,),) = storage._database.execute(
        "SELECT value FROM mainspring_meta WHERE key = 'schema_version'"
    )
    assert int(version) == _core.SQLITE_SCHEMA_VERSION
    # Every stored row was rewritten in format 2 (one protobuf Event each).
    rows = storage._database.execute("SELECT event_id, row FROM events")
    assert len(rows) == 13 + 6 + 5 + 3 + 3
    for event_id, row in rows:
        ((decoded_id, _, _),) = _core.history_outline(_core.join_rows([row]))
        assert decoded_id == event_id
    client = Client(storage)
    # Listed by status and by type through the indexes the migration added (schema 7).
    closed = client.list_workflows(status="COMPLETED")
    assert [run.workflow_id async for run in closed] == ["checkout-done"]
    of_type = client.list_workflows(workflow_type="failing", page_size=1)
    assert [(run.workflow_id, run.status) async for run in of_type] == [("failing-done", "FAILED")]
    # The closed runs' histories read back whole and replay through today's code.
    replayer = Replayer(workflows=ALL_WORKFLOWS)  # type: ignore[arg-type]
    for workflow_id, length in (("checkout-done", 13), ("failing-done", 6)):
        history = await client.get_workflow_handle(workflow_id).history()
        assert len(history) == length
        replayer.replay(history)
    assert await client.get_workflow_handle("checkout-done").result() == {
        "order_id": "o-1",
        "charged": 500,
    }
    workers = [
        Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS, activities=ALL_ACTIVITIES)
        for queue in ("tests", "idle")
    ]
    for worker in workers:
        await worker.__aenter__()
    try:
        basket = client.get_workflow_handle("cart")
        # Rebuilt by replay of the old rows, then new events appended after them.
        assert await basket.query(Items()) == ["apple", "pear"]
        await basket.signal(AddItem(item="checkout"))
        assert await basket.result(timeout=30) == ["apple", "pear", "checkout"]
        async with time_skipping(storage):
            assert await client.get_workflow_handle("sleeper").result(timeout=30) == "3600"
            assert await client.get_workflow_handle("sequential").result(timeout=30) == 6
    finally:
        for worker in workers:
            await worker.__aexit__(None, None, None)
    for workflow_id in ("cart", "sleeper", "sequential"):
        replayer.replay(await client.get_workflow_handle(workflow_id).history())
    await client.close()


def test_histories_exported_in_format_1_load_and_replay() -> None:
    replayer = Replayer(workflows=ALL_WORKFLOWS)  # type: ignore[arg-type]
    for workflow_id in ("checkout-done", "failing-done"):
        encoded = History((EXPORTS / f"{workflow_id}.msh").read_bytes())
        text = (EXPORTS / f"{workflow_id}.json").read_text()
        exported = History.from_json(text)
        # The same events, and the JSON shape has not changed: exported again, byte for byte.
        assert encoded.to_json() == exported.to_json() == text.rstrip("\n")
        replayer.replay(encoded)
        replayer.replay(exported)


def test_a_format_1_row_upgrades_for_stores_written_in_python() -> None:
    with contextlib.closing(sqlite3.connect(GOLDEN / "schema-4-in-flight.db")) as connection:
        ((row,),) = connection.execute("SELECT row FROM events WHERE event_id = 1 LIMIT 1")
    ((event_id, _, kind),) = _core.history_outline(_core.join_rows([_core.upgrade_event_row(row)]))
    assert (event_id, kind) == (1, "WorkflowStarted")
