"""The batched statements of a group commit (`_groups.py`): many members' reads in one
statement, and their writes one statement per table and kind, each row set passed as arrays
and spread by ``unnest``. What each member writes is what its decisions say, collapsed to the
net change per record (an activity scheduled and cancelled in one member is never written),
fenced by the version its first decision expected."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import _core
from ...errors import StorageConflictError, WorkflowAlreadyStartedError

if TYPE_CHECKING:
    from ._groups import Write


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (what each ``unnest`` argument takes)."""
    return [[row[index] for row in rows] for index in range(width)]


async def runs(connection: Any, statements: dict[str, str], keys: dict[int, Any]) -> list[Any]:
    rows = await connection.fetch(statements["READ_RUNS"], sorted(keys))
    return [tuple(row) for row in rows]


async def activities(
    connection: Any, statements: dict[str, str], keys: dict[tuple[int, int], Any]
) -> list[Any]:
    ordered = sorted(keys)
    rows = await connection.fetch(
        statements["READ_ACTIVITIES"], [key[0] for key in ordered], [key[1] for key in ordered]
    )
    return [tuple(row) for row in rows]


async def insert_runs(
    connection: Any, statements: dict[str, str], writes: list[Write]
) -> list[tuple[Write, BaseException]]:
    """Inserts the members' new runs, open (so the unique index over open runs refuses an id
    that has one, even for a run its first task closes), then closes those that close."""
    new = [write for write in writes if write.decisions[0].inserts_run]
    if not new:
        return []
    rows = []
    for write in new:
        run = write.decisions[-1].run or write.decisions[0].run
        assert run is not None
        values: tuple[Any, ...] = run.row()
        rows.append((*values[1:6], "RUNNING", *values[7:]))
    inserted = await connection.fetch(statements["INSERT_RUNS"], *_columns(rows, 18))
    keys = {row[0]: row[1] for row in inserted}
    refused: list[tuple[Write, BaseException]] = []
    closing: list[tuple[int, str]] = []
    for write, row in zip(new, rows, strict=True):
        run_id = row[2]
        key = keys.get(run_id)
        if key is None:
            refused.append(
                (write, WorkflowAlreadyStartedError(f"workflow already started: {row[1]}"))
            )
            continue
        write.run_key = key
        status = _final_run(write).row()[6]
        if status != "RUNNING":
            closing.append((key, status))
    if closing:
        await connection.execute(
            statements["CLOSE_NEW_RUNS"], [key for key, _ in closing], [s for _, s in closing]
        )
    return refused


def _final_run(write: Write) -> _core.RunRecord:
    for decision in reversed(write.decisions):
        if decision.run is not None:
            return decision.run
    raise AssertionError("a member that inserts a run has its record")


async def update_runs(
    connection: Any, statements: dict[str, str], writes: list[Write]
) -> list[tuple[Write, BaseException]]:
    """Each member's run as its last decision left it, compare-and-set on the version its
    first decision expected; the members whose run had moved on are refused."""
    updating = [
        write
        for write in writes
        if not write.decisions[0].inserts_run
        and any(decision.run is not None for decision in write.decisions)
    ]
    if not updating:
        return []
    keys, expected, rows = [], [], []
    for write in updating:
        first = next(decision for decision in write.decisions if decision.run is not None)
        keys.append(write.run_key)
        expected.append(first.expected_version)
        rows.append(_final_run(write).row()[1:])
    updated = await connection.fetch(statements["UPDATE_RUNS"], keys, expected, *_columns(rows, 18))
    done = {row[0] for row in updated}
    return [
        (write, StorageConflictError(f"run {write.run_key} changed since it was read"))
        for write in updating
        if write.run_key not in done
    ]


async def write_the_rest(connection: Any, statements: dict[str, str], writes: list[Write]) -> None:
    """Events, activities, timers and dropped pending work of the members whose runs were
    written. A fence failing here rolls the group back (StorageConflictError)."""
    events: list[tuple[int, int, str, bytes]] = []
    activity_inserts: list[tuple[Any, ...]] = []
    activity_updates: list[tuple[Any, ...]] = []
    activity_deletes: list[tuple[int, int, int | None]] = []
    timer_inserts: list[tuple[int, int, int]] = []
    timer_deletes: list[tuple[int, int]] = []
    timers_that_must_exist: set[tuple[int, int]] = set()
    drops: list[int] = []
    for write in writes:
        key = write.run_key
        assert key is not None
        activity_net: dict[int, list[Any]] = {}
        timer_net: dict[int, list[Any]] = {}
        for decision in write.decisions:
            for event_id, kind, encoded in decision.events:
                events.append((key, event_id, kind, encoded))
            for kind, scheduled_event_id, version, record in decision.activities:
                net = activity_net.get(scheduled_event_id)
                if net is None:
                    activity_net[scheduled_event_id] = [kind, version, record]
                else:
                    net[2] = record
            for kind, started_event_id, fire_at in decision.timers:
                timer = timer_net.get(started_event_id)
                if timer is None:
                    timer_net[started_event_id] = [kind, fire_at, kind == "fire"]
                else:
                    timer[0] = "gone" if timer[0] == "insert" else timer[0]
                    timer[2] = timer[2] or kind == "fire"
            if decision.drop_pending_work:
                drops.append(key)
        for scheduled_event_id, (first, version, record) in activity_net.items():
            if first == "insert":
                if record is not None:
                    activity_inserts.append((key, *record.row()))
            elif record is None:
                activity_deletes.append((key, scheduled_event_id, version))
            else:
                activity_updates.append((key, scheduled_event_id, version, *record.row()[1:]))
        for started_event_id, (first, fire_at, fires) in timer_net.items():
            if first == "insert":
                timer_inserts.append((key, started_event_id, fire_at))
            elif first != "gone":
                timer_deletes.append((key, started_event_id))
                if fires:
                    timers_that_must_exist.add((key, started_event_id))
    if events:
        await connection.execute(statements["INSERT_EVENTS_BATCH"], *_columns(events, 4))
    if activity_inserts:
        await connection.execute(statements["INSERT_ACTIVITIES"], *_columns(activity_inserts, 22))
    if activity_updates:
        updated = await connection.fetch(
            statements["UPDATE_ACTIVITIES"], *_columns(activity_updates, 23)
        )
        if len(updated) != len(activity_updates):
            raise StorageConflictError("an activity changed since it was read")
    if activity_deletes:
        deleted = await connection.fetch(
            statements["DELETE_ACTIVITIES"], *_columns(activity_deletes, 3)
        )
        if len(deleted) != len(activity_deletes):
            raise StorageConflictError("an activity changed since it was read")
    if timer_inserts:
        await connection.execute(statements["INSERT_TIMERS"], *_columns(timer_inserts, 3))
    if timer_deletes:
        deleted = await connection.fetch(statements["DELETE_TIMERS"], *_columns(timer_deletes, 2))
        found = {(row[0], row[1]) for row in deleted}
        if not timers_that_must_exist <= found:
            raise StorageConflictError("a timer already fired")
    if drops:
        await connection.execute(statements["DROP_PENDING_ACTIVITIES"], drops)
        await connection.execute(statements["DROP_PENDING_TIMERS"], drops)
