"""SQLite files written by earlier releases open, migrate and finish their work.

Each golden file in `sqlite_files/` was written by the release whose schema it carries (see
`sqlite_files/record.py`); they are never rewritten. This one has an activity queued, an
activity waiting to retry after a failed attempt, an attempt running (heartbeated) and a
workflow task leased by workers that are gone, and a timer pending, in the layout of schema
version 4: activities keyed by a number, retry policies and failures in MessagePack.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mainspring import Client, Worker, _core
from mainspring.storage import SqliteStorage, VirtualClock
from mainspring.testing import time_skipping

from .workflows import ALL_ACTIVITIES, ALL_WORKFLOWS

GOLDEN = Path(__file__).parent / "sqlite_files"


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
