"""A store written in Python, its tables in dicts: the smallest real implementation of
`mainspring.storage._store_tables.StoreTables`, so the storage contract runs through the Python
adapter over the core's rules (what a store on asyncpg does) with no rule of its own here.

It keeps the same rows a database store keeps (`RunRecord.row()`, `ActivityRecord.row()`),
fences every write with the version the decision names, and enforces one open run per workflow
id with an index, as a database's unique index would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

from mainspring import _core
from mainspring._protocol import ActivityRowTuple, RunRowTuple
from mainspring.errors import StorageConflictError, WorkflowAlreadyStartedError
from mainspring.storage import QueryTask
from mainspring.storage._adapter import AdaptedStorage
from mainspring.storage._store_tables import Due
from mainspring.storage.memory import VirtualClock

_TASK_QUEUED, _TASK_LEASED = 1, 2


async def _round_trip() -> None:
    """Every call gives the loop away, as a database's round trip does, so that the adapter's
    operations interleave between their reads and their writes as they do on a real store."""
    await asyncio.sleep(0)


_ATTEMPT_QUEUED, _ATTEMPT_RUNNING = 0, 1


class DictTables:
    def __init__(self) -> None:
        self.runs: dict[int, RunRowTuple] = {}
        self.events: dict[int, list[bytes]] = {}
        self.activities: dict[tuple[int, int], ActivityRowTuple] = {}
        self.timers: dict[tuple[int, int], int] = {}
        self.open_runs: dict[str, int] = {}  # the unique index
        self.lease_identities: dict[int, str] = {}  # who holds a leased run's task
        self.queries: dict[int, list[Any]] = {}
        self._keys = itertools.count(1)
        self._query_ids = itertools.count(1)

    async def settle_lost_write(self, unknown: Any) -> bool:
        return True  # its writes happen at once, or not at all

    # Reads.

    def _record(self, row: RunRowTuple | None) -> _core.RunRecord | None:
        return None if row is None else _core.RunRecord.from_row(row)

    async def run(self, run_key: int) -> _core.RunRecord | None:
        await _round_trip()
        return self._record(self.runs.get(run_key))

    async def current_run(self, workflow_id: str) -> _core.RunRecord | None:
        await _round_trip()
        keys = [key for key, row in self.runs.items() if row[2] == workflow_id]
        return self._record(self.runs[max(keys)]) if keys else None

    async def run_by_id(self, run_id: str) -> _core.RunRecord | None:
        await _round_trip()
        found = [row for row in self.runs.values() if row[3] == run_id]
        return self._record(found[0]) if found else None

    async def list_runs(
        self,
        after_run_key: int | None,
        limit: int,
        status: str | None,
        workflow_type: str | None,
    ) -> list[_core.RunRecord]:
        await _round_trip()
        after = -1 if after_run_key is None else after_run_key
        found = [
            _core.RunRecord.from_row(self.runs[key])
            for key in sorted(self.runs)
            if key > after
            and (status is None or self.runs[key][6] == status)
            and (workflow_type is None or self.runs[key][4] == workflow_type)
        ]
        return found[:limit]

    async def activity(self, run_key: int, scheduled_event_id: int) -> _core.ActivityRecord | None:
        await _round_trip()
        row = self.activities.get((run_key, scheduled_event_id))
        return None if row is None else _core.ActivityRecord.from_row(row)

    async def timer(self, run_key: int, started_event_id: int) -> int | None:
        await _round_trip()
        return self.timers.get((run_key, started_event_id))

    async def event_rows(self, run_key: int, from_event_id: int, to_event_id: int) -> list[bytes]:
        await _round_trip()
        return self.events.get(run_key, [])[max(from_event_id, 1) - 1 : to_event_id]

    async def ready_workflow_tasks(
        self, task_queue: str, now_ms: int, limit: int
    ) -> list[_core.RunRecord]:
        await _round_trip()
        ready = sorted(
            (row[9], key)
            for key, row in self.runs.items()
            if row[5] == task_queue and row[8] == _TASK_QUEUED and row[9] is not None
            and row[9] <= now_ms
        )  # fmt: skip
        return [_core.RunRecord.from_row(self.runs[key]) for _, key in ready[:limit]]

    async def ready_activity_tasks(
        self, task_queue: str, now_ms: int, limit: int
    ) -> list[tuple[_core.RunRecord, _core.ActivityRecord]]:
        await _round_trip()
        ready = sorted(
            (row[14], key)
            for key, row in self.activities.items()
            if row[3] == task_queue and row[13] == _ATTEMPT_QUEUED and row[14] is not None
            and row[14] <= now_ms
        )  # fmt: skip
        return [
            (
                _core.RunRecord.from_row(self.runs[key[0]]),
                _core.ActivityRecord.from_row(self.activities[key]),
            )
            for _, key in ready[:limit]
        ]

    async def due(self, now_ms: int, limit: int) -> list[Due]:
        await _round_trip()
        due = [
            Due(fire_at, "timer", run_key, started)
            for (run_key, started), fire_at in self.timers.items()
            if fire_at <= now_ms
        ]
        due += [
            Due(row[11], "lease", key, 0)
            for key, row in self.runs.items()
            if row[8] == _TASK_LEASED and row[11] is not None and row[11] <= now_ms
        ]
        due += [
            Due(row[20], "activity", run_key, scheduled)
            for (run_key, scheduled), row in self.activities.items()
            if row[20] is not None and row[20] <= now_ms
        ]
        order = {"timer": 0, "lease": 1, "activity": 2}
        due.sort(key=lambda item: (item.at_ms, order[item.kind], item.run_key, item.item))
        return due[:limit]

    async def next_wakeup_ms(self, now_ms: int, task_queue: str | None = None) -> int | None:
        await _round_trip()
        return self._next_wakeup(now_ms, task_queue)

    def _next_wakeup(self, now_ms: int, task_queue: str | None) -> int | None:
        times = list(self.timers.values())
        ready_now = any(
            row[5] == task_queue and row[8] == _TASK_QUEUED and (row[9] or 0) <= now_ms
            for row in self.runs.values()
        ) or any(
            row[3] == task_queue and row[13] == _ATTEMPT_QUEUED and (row[14] or 0) <= now_ms
            for row in self.activities.values()
        )
        if ready_now:
            times.append(now_ms)
        for row in self.runs.values():
            if row[8] == _TASK_LEASED and row[11] is not None:
                times.append(row[11])
            if row[8] == _TASK_QUEUED and row[9] is not None and row[9] > now_ms:
                times.append(row[9])
        for activity in self.activities.values():
            if activity[20] is not None:
                times.append(activity[20])
            if (
                activity[13] == _ATTEMPT_QUEUED
                and activity[14] is not None
                and activity[14] > now_ms
            ):
                times.append(activity[14])
        return min(times, default=None)

    async def busy_and_wakeup(self, now_ms: int) -> tuple[int, int | None]:
        await _round_trip()
        return self._busy(now_ms), self._next_wakeup(now_ms, None)

    def _busy(self, now_ms: int) -> int:
        runs = sum(
            1
            for row in self.runs.values()
            if row[8] == _TASK_LEASED or (row[8] == _TASK_QUEUED and (row[9] or 0) <= now_ms)
        )
        attempts = sum(
            1
            for row in self.activities.values()
            if row[13] == _ATTEMPT_RUNNING or (row[14] or 0) <= now_ms
        )
        waiting = sum(1 for query in self.queries.values() if query[5] < 2)
        return runs + attempts + waiting

    # The fenced write.

    def operation(self) -> contextlib.AbstractAsyncContextManager[None]:
        # Every write is a compare-and-set on its own: an operation needs no scope.
        return contextlib.nullcontext()

    async def lease_identity(self, run_key: int) -> str | None:
        await _round_trip()
        return self.lease_identities.get(run_key)

    async def persist(self, run_key: int | None, decision: _core.Decision, identity: str) -> int:
        await _round_trip()
        return (await self.persist_all([(run_key, decision)], identity))[0]

    async def persist_all(
        self, writes: list[tuple[int | None, _core.Decision]], identity: str
    ) -> list[int]:
        await _round_trip()
        # One transaction: checked and applied on copies, swapped in only if all of it holds.
        runs, events = dict(self.runs), {key: list(rows) for key, rows in self.events.items()}
        activities, timers = dict(self.activities), dict(self.timers)
        open_runs = dict(self.open_runs)
        keys = []
        before = dict(runs)
        for run_key, decision in writes:
            key = self._write(runs, events, activities, timers, open_runs, run_key, decision)
            keys.append(key)
        holders = dict(self.lease_identities)
        for key in keys:
            _hold(holders, key, before.get(key), runs[key], identity)
        self.runs, self.events, self.activities = runs, events, activities
        self.timers, self.open_runs = timers, open_runs
        self.lease_identities = holders
        return keys

    def _write(
        self,
        runs: dict[int, RunRowTuple],
        events: dict[int, list[bytes]],
        activities: dict[tuple[int, int], ActivityRowTuple],
        timers: dict[tuple[int, int], int],
        open_runs: dict[str, int],
        run_key: int | None,
        decision: _core.Decision,
    ) -> int:
        record = decision.run
        if record is not None:
            row = record.row()
            if decision.inserts_run:
                workflow_id = row[2]
                if workflow_id in open_runs:
                    raise WorkflowAlreadyStartedError(f"workflow already started: {workflow_id}")
                run_key = next(self._keys)
                events[run_key] = []
            else:
                assert run_key is not None
                stored = runs.get(run_key)
                if stored is None or stored[1] != decision.expected_version:
                    raise StorageConflictError(f"run {run_key} changed since it was read")
            assert run_key is not None
            row = (run_key, *row[1:])
            runs[run_key] = row  # type: ignore[assignment]
            if row[6] == "RUNNING":
                open_runs[row[2]] = run_key
            else:
                open_runs.pop(row[2], None)
        assert run_key is not None
        for event_id, _, encoded in decision.events:
            if event_id != len(events[run_key]) + 1:
                raise StorageConflictError(f"event {event_id} of run {run_key} is not the next")
            events[run_key].append(encoded)
        for write, scheduled_event_id, expected, activity in decision.activities:
            key = (run_key, scheduled_event_id)
            current = activities.get(key)
            if write == "insert":
                if current is not None:
                    raise StorageConflictError(f"activity {key} exists")
            elif current is None or current[1] != expected:
                raise StorageConflictError(f"activity {key} changed since it was read")
            if activity is None:
                del activities[key]
            else:
                activities[key] = activity.row()
        for write, started_event_id, fire_at in decision.timers:
            if write == "insert":
                assert fire_at is not None
                timers[(run_key, started_event_id)] = fire_at
            elif timers.pop((run_key, started_event_id), None) is None and write == "fire":
                raise StorageConflictError(f"timer {started_event_id} already fired")
        if decision.drop_pending_work:
            for key in [key for key in activities if key[0] == run_key]:
                del activities[key]
            for key in [key for key in timers if key[0] == run_key]:
                del timers[key]
        return run_key

    # Queries: [task_queue, workflow_id, run_id, name, input, state, result, error]

    async def submit_query(self, now_ms: int, run: _core.RunRecord, name: str, input: bytes) -> int:
        await _round_trip()
        query_id = next(self._query_ids)
        self.queries[query_id] = [
            run.task_queue,
            run.workflow_id,
            run.run_id,
            name,
            input,
            0,
            None,
            None,
        ]
        return query_id

    async def take_query(self, task_queue: str) -> QueryTask | None:
        await _round_trip()
        for query_id, query in self.queries.items():
            if query[0] == task_queue and query[5] == 0:
                query[5] = 1
                return QueryTask(query[1], query[2], query[3], query[4], query_id)
        return None

    async def answer_query(self, query_id: int, result: bytes | None, error: str | None) -> None:
        await _round_trip()
        query = self.queries.get(query_id)
        if query is not None and query[5] == 1:
            query[5:] = [2, result, error]

    async def read_answer(
        self, query_id: int, give_up: bool
    ) -> tuple[bytes | None, str | None] | None:
        await _round_trip()
        query = self.queries.get(query_id)
        if query is None:
            return None
        if query[5] == 2 or give_up:
            del self.queries[query_id]
        return (query[6], query[7]) if query[5] == 2 else None


def _hold(
    holders: dict[int, str],
    key: int,
    before: RunRowTuple | None,
    after: RunRowTuple,
    identity: str,
) -> None:
    """The lease's holder after a write: the writer's identity for a new lease (a token the
    run did not have), the same for the same lease, nobody once no worker holds the task."""
    if after[8] != _TASK_LEASED:
        holders.pop(key, None)
    elif before is None or before[10] != after[10]:
        holders[key] = identity


def dict_storage(clock: VirtualClock | None = None) -> AdaptedStorage:
    """A storage over dict tables (see the module doc)."""
    return AdaptedStorage(DictTables(), clock=clock)
