"""What a store written in Python implements for the adapter (`_adapter.py`): its tables, as
:class:`StoreTables` (reads of its records, one fenced write, and the scope of an
operation), and the deadlines its tick finds (:class:`Due`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

from .. import _core
from ..errors import CommitUnknownError
from .base import QueryTask


@dataclass(frozen=True, slots=True)
class Due:
    """A deadline the tick may act on: a timer (``item`` its started event id), a workflow
    task's lease (``item`` 0), or an activity's earliest deadline (``item`` its scheduled event
    id)."""

    at_ms: int
    kind: str  # "timer" | "lease" | "activity"
    run_key: int
    item: int


class StoreTables(Protocol):
    """A store's tables, as :class:`AdaptedStorage` uses them. Reads may see a moment that has
    passed: what they return is fenced when written back.

    The row layouts are the core's (`_core.RunRecord.row()`, `ActivityRecord.row()`,
    `_core.encode_inbound_row` and the outcome rows: history format 2), versioned with the
    store's own schema. A store that kept rows of an earlier layout migrates them as the
    SQLite store does (`rust/sqlite/src/schema.rs`): event rows of format 1 through
    `_core.upgrade_event_row`, run rows gaining the columns added since (`dropped_signals`,
    0), in its migration's transaction."""

    async def run(self, run_key: int) -> _core.RunRecord | None: ...
    async def current_run(self, workflow_id: str) -> _core.RunRecord | None:
        """The workflow id's latest run, open or closed."""
        ...

    async def run_by_id(self, run_id: str) -> _core.RunRecord | None: ...
    async def list_runs(
        self,
        after_run_key: int | None,
        limit: int,
        status: str | None,
        workflow_type: str | None,
    ) -> list[_core.RunRecord]:
        """Up to ``limit`` runs whose key is greater than ``after_run_key`` (None: from the
        first), in key order, of ``status`` and ``workflow_type`` when given: keyset
        pagination, by an index over each filter that orders its runs by key."""
        ...

    async def activity(
        self, run_key: int, scheduled_event_id: int
    ) -> _core.ActivityRecord | None: ...
    async def timer(self, run_key: int, started_event_id: int) -> int | None:
        """When the timer fires, if it is still pending."""
        ...

    async def event_rows(self, run_key: int, from_event_id: int, to_event_id: int) -> list[bytes]:
        """The rows of events ``from_event_id..=to_event_id``, in order."""
        ...

    async def ready_workflow_tasks(
        self, task_queue: str, now_ms: int, limit: int
    ) -> list[_core.RunRecord]:
        """Runs whose task is queued and ready, oldest first (candidates: the rules decide)."""
        ...

    async def ready_activity_tasks(
        self, task_queue: str, now_ms: int, limit: int
    ) -> list[tuple[_core.RunRecord, _core.ActivityRecord]]:
        """Queued, ready attempts with their runs, oldest first (candidates)."""
        ...

    async def due(self, now_ms: int, limit: int) -> list[Due]:
        """The earliest ``limit`` deadlines at or before ``now_ms`` (every deadline is due at
        its time): timers' fire times, leased tasks' deadlines, activities' next deadlines.
        Candidates, in time order (then timer, lease, activity; then key): the rules decide
        what each does, and the rest are due at the next tick."""
        ...

    async def next_wakeup_ms(self, now_ms: int, task_queue: str | None = None) -> int | None:
        """The earliest deadline (as :meth:`due` finds them), or ready time of a queued task
        or attempt after ``now_ms``; or a time at or before ``now_ms`` when a task or attempt
        of ``task_queue`` is ready now (it may have become ready while its poller's last poll
        was on its way, with nothing left to wake the poller)."""
        ...

    async def busy_and_wakeup(self, now_ms: int) -> tuple[int, int | None]:
        """Tasks ready or leased, attempts ready or running and queries waiting, and the
        next wakeup (as :meth:`next_wakeup_ms` without a queue), read at one instant: time
        skipping jumps the clock only if nothing is busy, and a commit landing between two
        reads would have it jump past a deadline that commit just set (an attempt's)."""
        ...

    def operation(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The scope of one operation's reads and its write (`persist` inside it). A store may
        batch the reads and writes of the operations in scope at once (PostgreSQL: one
        statement for a group's writes), each write still fenced as its own. A store that
        writes each operation alone makes it a no-op."""
        ...

    async def lease_identity(self, run_key: int) -> str | None:
        """Who holds the run's workflow task, as the write that leased it named the holder
        (what ``describe`` shows)."""
        ...

    async def settle_lost_write(self, unknown: CommitUnknownError) -> bool:
        """Before a write whose commit is unknown is read back: ends whatever the lost
        connection's session may still do (a database's server process left running by a
        partition); True once nothing of that write can still happen, False if that cannot
        be made sure (the write stays unknown)."""
        ...

    async def persist(self, run_key: int | None, decision: _core.Decision, identity: str) -> int:
        """Writes the decision for run ``run_key`` (None: a new run, inserted open so the
        unique index over open runs fences it; its key is returned) in one transaction: the
        run's record (compare-and-set on ``expected_version``), its events, the activity
        writes (compare-and-set), the timer writes (a "fire" must find its timer), then a
        closed run's pending work dropped.
        Raises :class:`~mainspring.errors.StorageConflictError` (nothing written) when a
        compare-and-set finds another version, and ``WorkflowAlreadyStartedError`` when the
        unique index refuses a new run."""
        ...

    async def persist_all(
        self, writes: list[tuple[int | None, _core.Decision]], identity: str
    ) -> list[int]:
        """:meth:`persist` for several decisions of one run in one transaction, in order."""
        ...

    # Queries (answered by a worker, possibly in another process).
    async def submit_query(
        self, now_ms: int, run: _core.RunRecord, name: str, input: bytes
    ) -> int: ...
    async def take_query(self, task_queue: str) -> QueryTask | None: ...
    async def answer_query(
        self, query_id: int, result: bytes | None, error: str | None
    ) -> None: ...
    async def read_answer(
        self, query_id: int, give_up: bool
    ) -> tuple[bytes | None, str | None] | None: ...
