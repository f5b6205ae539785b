"""A commit whose outcome is unknown (the connection dropped after it was sent) is read back
by the adapter: landed, the call succeeds (what it leased included); not landed, it fails as
not committed; moved on by another writer since, it stays unknown. On the dict store, whose
`persist` is made to lose its answer."""

from __future__ import annotations

from typing import Any

import pytest

from mainspring import _core
from mainspring.errors import CommitUnknownError, StorageError
from mainspring.storage._adapter import AdaptedStorage
from mainspring.storage.memory import VirtualClock

from .conformance import QUEUE
from .dict_tables import DictTables


class LosingTables(DictTables):
    """Dict tables whose next write loses its answer: after writing (``landed``), before
    (``lost``), or after writing, with another writer moving the run on (``moved``)."""

    def __init__(self) -> None:
        super().__init__()
        self.next_loss: str | None = None

    async def persist_all(
        self, writes: list[tuple[int | None, _core.Decision]], identity: str
    ) -> list[int]:
        loss, self.next_loss = self.next_loss, None
        if loss == "lost":
            raise CommitUnknownError("the connection dropped (nothing written)")
        keys = await super().persist_all(writes, identity)
        if loss == "moved":
            key = keys[0]
            row = list(self.runs[key])
            row[1] = row[1] + 1_000_003  # another writer's version
            self.runs[key] = tuple(row)  # type: ignore[assignment]
        if loss is not None:
            raise CommitUnknownError("the connection dropped (after the write)")
        return keys


def _storage() -> tuple[AdaptedStorage, LosingTables]:
    tables = LosingTables()
    return AdaptedStorage(tables, clock=VirtualClock()), tables


async def _signals(storage: AdaptedStorage, workflow_id: str) -> int:
    description = await storage.describe_workflow(workflow_id)
    history = await storage.read_history(workflow_id, description.run_id)
    return [kind for _, _, kind in _core.history_outline(history)].count("WorkflowSignaled")


async def test_a_start_that_landed_succeeds_and_one_that_did_not_fails_as_not_committed() -> None:
    storage, tables = _storage()
    tables.next_loss = "landed"
    await storage.start_workflow("landed", "r1", "wf", QUEUE, b"null")
    assert (await storage.describe_workflow("landed")).run_id == "r1"

    tables.next_loss = "lost"
    with pytest.raises(StorageError) as refused:
        await storage.start_workflow("lost", "r2", "wf", QUEUE, b"null")
    assert refused.value.committed is False
    assert not isinstance(refused.value, CommitUnknownError)
    assert [run.workflow_id for run in (await storage.list_workflows(page_size=10)).runs] == [
        "landed"
    ]


async def test_a_signal_that_landed_is_recorded_once() -> None:
    storage, tables = _storage()
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    tables.next_loss = "landed"
    await storage.signal_workflow("w", "Bump", b"1")
    assert await _signals(storage, "w") == 1


async def test_a_write_another_writer_moved_on_since_stays_unknown() -> None:
    storage, tables = _storage()
    await storage.start_workflow("w", "r", "wf", QUEUE, b"null")
    tables.next_loss = "moved"
    with pytest.raises(CommitUnknownError) as unknown:
        await storage.signal_workflow("w", "Bump", b"1")
    error: Any = unknown.value
    assert error.committed is None
