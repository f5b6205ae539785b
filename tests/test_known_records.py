"""Stores written over the Python adapter (the dict tables, PostgreSQL) decide a run's next
step on the records their own last write left (`storage/_known_records.py`), not on a read;
another writer's change in between is caught by the versions' fence and the step is decided
again on what is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mainspring import _core
from mainspring._protocol import COMMAND_COMPLETE_WORKFLOW
from mainspring.storage._adapter import AdaptedStorage
from mainspring.storage._known_records import KnownRecords

from .conformance import QUEUE, Driver, _kinds, _poll_activity_task, _schedule
from .dict_tables import DictTables
from .postgres_server import postgres_storage


@pytest.fixture(params=["python-adapter", "postgres"])
async def two_writers(request: Any) -> AsyncIterator[tuple[AdaptedStorage, AdaptedStorage]]:
    """Two storage objects over the same tables: two processes, as far as either can tell."""
    first: Any
    second: Any
    if request.param == "python-adapter":
        tables = DictTables()
        first, second = AdaptedStorage(tables), AdaptedStorage(tables)
    else:
        first = postgres_storage()
        second = postgres_storage(schema=first.schema, owner=False)
        await first.connect()
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


class Reads:
    """Counts the reads of runs and activities by key, the ones a step would make."""

    def __init__(self, storage: AdaptedStorage) -> None:
        self.count = 0
        tables: Any = storage.tables
        run, activity = tables.run, tables.activity

        async def counted_run(*arguments: Any) -> Any:
            self.count += 1
            return await run(*arguments)

        async def counted_activity(*arguments: Any) -> Any:
            self.count += 1
            return await activity(*arguments)

        tables.run, tables.activity = counted_run, counted_activity


async def _with_attempt(storage: AdaptedStorage) -> tuple[Driver, Any]:
    """A run whose first task scheduled an activity, and its attempt, leased."""
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    driver = Driver(storage)
    await driver.step([_schedule(1)])
    attempt = await _poll_activity_task(storage)
    assert attempt is not None
    return driver, attempt


async def test_the_next_steps_of_a_run_this_storage_wrote_read_no_record(
    two_writers: tuple[AdaptedStorage, AdaptedStorage],
) -> None:
    storage, _ = two_writers
    driver, attempt = await _with_attempt(storage)
    reads = Reads(storage)
    await storage.complete_activity_task(attempt, b"7")
    task = await driver.lease()
    await driver.advance(task)
    await driver.commit(task, [(COMMAND_COMPLETE_WORKFLOW, b"7")])
    assert reads.count == 0
    assert (await _kinds(storage, "w"))[-3:] == [
        "ActivityCompleted",
        "WorkflowTaskCompleted",
        "WorkflowCompleted",
    ]


async def test_a_step_on_a_run_another_writer_changed_is_decided_again_on_what_is_stored(
    two_writers: tuple[AdaptedStorage, AdaptedStorage],
) -> None:
    storage, other = two_writers
    driver, attempt = await _with_attempt(storage)
    await other.signal_workflow("w", "go", b"1")
    reads = Reads(storage)
    await storage.complete_activity_task(attempt, b"7")
    # The remembered run was refused by its version; the run and activity were read.
    assert reads.count >= 2
    assert (await _kinds(storage, "w"))[-2:] == ["WorkflowSignaled", "ActivityCompleted"]
    jobs = await driver.step([(COMMAND_COMPLETE_WORKFLOW, b"7")])
    assert len(jobs) == 2  # the signal and the activity's result, neither lost
    assert (await _kinds(storage, "w"))[-1] == "WorkflowCompleted"


async def test_a_lease_taken_elsewhere_is_honoured_though_the_remembered_run_refuses_it(
    two_writers: tuple[AdaptedStorage, AdaptedStorage],
) -> None:
    storage, other = two_writers
    driver, attempt = await _with_attempt(storage)
    # This storage's write leaves the workflow task queued, and remembers it so.
    await storage.complete_activity_task(attempt, b"7")
    # Another writer leases it: on the remembered run, the rules would refuse its commit.
    task = await Driver(other).lease()
    await driver.advance(task)
    await driver.commit(task, [(COMMAND_COMPLETE_WORKFLOW, b"7")])
    assert (await _kinds(storage, "w"))[-1] == "WorkflowCompleted"


# The records themselves.


def _run_row(key: int, version: int, status: str = "RUNNING") -> Any:
    return (key, version, "w", "r", "wf", QUEUE, status, 1, 0, None, None, None, 0, None,
            False, 1, 0, None, 0)  # fmt: skip


class _Decision:
    """What `KnownRecords.remember` reads of a decision."""

    def __init__(self, run: Any = None, activities: Any = (), drop: bool = False) -> None:
        self.run = run
        self.activities = list(activities)
        self.drop_pending_work = drop


def test_a_new_run_is_remembered_under_the_key_its_store_gave_it() -> None:
    known = KnownRecords()
    known.remember(41, [_Decision(_core.RunRecord.from_row(_run_row(0, 5)))])  # type: ignore[list-item]
    run = known.run(41)
    assert run is not None and (run.key, run.version) == (41, 5)


def test_a_closed_run_is_forgotten_and_the_oldest_runs_go_first() -> None:
    known = KnownRecords(limit=2)
    for key in (1, 2, 3):
        known.remember(key, [_Decision(_core.RunRecord.from_row(_run_row(key, 1)))])  # type: ignore[list-item]
    assert known.run(1) is None and known.run(3) is not None
    assert len(known) == 2
    known.remember(3, [_Decision(_core.RunRecord.from_row(_run_row(3, 2, "COMPLETED")))])  # type: ignore[list-item]
    assert known.run(3) is None
    assert known.forget(2) and not known.forget(2)


class _Activity:
    """What `KnownRecords` reads of an activity record."""

    def __init__(self, payload_bytes: int) -> None:
        self.payload_bytes = payload_bytes


def test_the_payload_bytes_the_activities_hold_are_bounded() -> None:
    known = KnownRecords(payload_limit=1_000)
    for key in (1, 2):
        run = _core.RunRecord.from_row(_run_row(key, 1))
        known.remember(key, [_Decision(run, [("insert", 3, None, _Activity(400))])])  # type: ignore[list-item]
    assert known.payload_bytes == 800
    run = _core.RunRecord.from_row(_run_row(3, 1))
    known.remember(3, [_Decision(run, [("insert", 3, None, _Activity(400))])])  # type: ignore[list-item]
    assert known.run(1) is None and known.run(3) is not None  # the oldest went
    assert known.payload_bytes == 800
    known.remember(3, [_Decision(None, [("delete", 3, 1, None)])])  # type: ignore[list-item]
    assert known.payload_bytes == 400
    assert known.forget(2) and known.payload_bytes == 0
