"""What the storage conformance suites share: every backend, on a virtual clock, and a driver
that plays a worker by hand (leases a task, feeds the run, commits chosen commands).

Later backends (MySQL) join `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mainspring import _core
from mainspring._protocol import (
    COMMAND_SCHEDULE_ACTIVITY,
)
from mainspring.storage import (
    ActivityTask,
    MemoryStorage,
    SqliteStorage,
    Storage,
    VirtualClock,
    WorkflowDescription,
    WorkflowTask,
)
from mainspring.storage._adapter import AdaptedStorage

from .dict_tables import dict_storage
from .postgres_server import postgres_storage

LEASE_MS = 10_000
QUEUE = "conformance"


def _memory(clock: VirtualClock, folder: Path) -> Storage:
    return MemoryStorage(clock=clock)


def _sqlite(clock: VirtualClock, folder: Path) -> Storage:
    return SqliteStorage(folder / "conformance.db", clock=clock)


def _sqlite_again(storage: Storage, clock: VirtualClock, folder: Path) -> Storage:
    # Another connection to the same file, with its own thread: another client (named, so
    # what it writes is told from what the first one does).
    return SqliteStorage(folder / "conformance.db", clock=clock, identity="second-client")


def _the_same(storage: Storage, clock: VirtualClock, folder: Path) -> Storage:
    return storage


def _python_adapter_again(storage: Storage, clock: VirtualClock, folder: Path) -> Storage:
    # Another adapter (its own rules, its own groups) over the same tables: another process.
    assert isinstance(storage, AdaptedStorage)
    return AdaptedStorage(storage.tables, clock=clock, identity="second-client")


def _python_adapter(clock: VirtualClock, folder: Path) -> Storage:
    # A store written in Python (tables in dicts) over the core's rules, as one on asyncpg.
    return dict_storage(clock)


def _postgres(clock: VirtualClock, folder: Path) -> Storage:
    # A schema of its own on the test server (`postgres_server.py`).
    return postgres_storage(clock)  # type: ignore[return-value]


def _postgres_again(storage: Storage, clock: VirtualClock, folder: Path) -> Storage:
    # Another store object on the same schema: its own pool, rules and listener, as another
    # process has.
    schema = storage.schema  # type: ignore[attr-defined]
    return postgres_storage(  # type: ignore[return-value]
        clock, schema, owner=False, identity="second-client"
    )


BACKENDS: dict[str, Callable[[VirtualClock, Path], Storage]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "python-adapter": _python_adapter,
    "postgres": _postgres,
}
# A second client of the same store: another connection, or another adapter over the same
# tables; the same object for memory (one process owns a memory store).
SECOND_CLIENTS: dict[str, Callable[[Storage, VirtualClock, Path], Storage]] = {
    "memory": _the_same,
    "sqlite": _sqlite_again,
    "python-adapter": _python_adapter_again,
    "postgres": _postgres_again,
}


async def list_runs(
    storage: Storage, page_size: int = 1000, **filters: Any
) -> list[WorkflowDescription]:
    """Every run the storage lists (with ``filters``), page after page."""
    runs: list[WorkflowDescription] = []
    after: int | None = None
    while True:
        page = await storage.list_workflows(after_run_key=after, page_size=page_size, **filters)
        runs += page.runs
        if page.next_after_run_key is None:
            return runs
        after = page.next_after_run_key


def _schedule(seq: int, activity_type: str = "act", **options: Any) -> tuple[Any, ...]:
    return (
        COMMAND_SCHEDULE_ACTIVITY, seq, activity_type, b"null", QUEUE,
        options.get("schedule_to_close"), options.get("schedule_to_start"),
        options.get("start_to_close", 30_000), options.get("heartbeat"),
        options.get("initial", 1_000), 2.0, None, options.get("attempts", 0), [],
    )  # fmt: skip


async def _poll_workflow_task(storage: Storage) -> WorkflowTask | None:
    tasks = await storage.poll_workflow_tasks(QUEUE, LEASE_MS, 1)
    return tasks[0] if tasks else None


async def _poll_activity_task(storage: Storage) -> ActivityTask | None:
    tasks = await storage.poll_activity_tasks(QUEUE, 1)
    return tasks[0] if tasks else None


class Driver:
    """Plays a worker by hand: leases a task, feeds the run, commits chosen commands."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.runs: dict[str, _core.WorkflowRun] = {}

    async def lease(self) -> WorkflowTask:
        task = await _poll_workflow_task(self.storage)
        assert task is not None, "expected a workflow task"
        return task

    async def advance(self, task: WorkflowTask) -> list[tuple[Any, ...]]:
        """Feeds the run its new events and returns the live activation's jobs."""
        run = self.runs.setdefault(task.run_id, _core.WorkflowRun())
        run.add_events(
            await self.storage.read_history(task.workflow_id, task.run_id, run.history_length + 1)
        )
        activation = run.next_activation(self.storage.now_ms())
        assert activation is not None and not activation[0]
        return activation[2]

    async def commit(self, task: WorkflowTask, commands: list[tuple[Any, ...]]) -> None:
        outcome = self.runs[task.run_id].complete(commands)
        await self.storage.complete_workflow_task(task, outcome)

    async def step(self, commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        task = await self.lease()
        jobs = await self.advance(task)
        await self.commit(task, commands)
        return jobs


async def _kinds(storage: Storage, workflow_id: str) -> list[str]:
    """The kinds of the workflow's current run's events, in order."""
    description = await storage.describe_workflow(workflow_id)
    history = await storage.read_history(workflow_id, description.run_id, 1)
    return [kind for _, _, kind in _core.history_outline(history)]
