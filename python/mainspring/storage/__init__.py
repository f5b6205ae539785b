"""Storage backends. Each implements :class:`Storage`; one conformance suite tests them all."""

from typing import TYPE_CHECKING, Any

from .base import (
    WORKFLOW_STATUSES,
    ActivityTask,
    CommittedTask,
    FusedCommits,
    QueryTask,
    Storage,
    StorageCapabilities,
    TimeSkipping,
    WorkflowDescription,
    WorkflowPage,
    WorkflowTask,
)
from .memory import MemoryStorage, VirtualClock
from .sqlite import SqliteStorage

if TYPE_CHECKING:
    from .postgres import PostgresStorage


def __getattr__(name: str) -> Any:
    # PostgresStorage needs asyncpg (the `postgres` extra): imported when first asked for, so
    # the embedded default works without it.
    if name == "PostgresStorage":
        from .postgres import PostgresStorage

        return PostgresStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "WORKFLOW_STATUSES",
    "ActivityTask",
    "CommittedTask",
    "FusedCommits",
    "MemoryStorage",
    "PostgresStorage",
    "QueryTask",
    "SqliteStorage",
    "Storage",
    "StorageCapabilities",
    "TimeSkipping",
    "VirtualClock",
    "WorkflowDescription",
    "WorkflowPage",
    "WorkflowTask",
]
