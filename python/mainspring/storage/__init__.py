"""Storage backends. Each implements :class:`Storage`; one conformance suite tests them all."""

from .base import (
    ActivityTask,
    CommittedTask,
    FusedCommits,
    QueryTask,
    Storage,
    StorageCapabilities,
    TimeSkipping,
    WorkflowDescription,
    WorkflowTask,
)
from .memory import MemoryStorage, VirtualClock
from .sqlite import SqliteStorage

__all__ = [
    "ActivityTask",
    "CommittedTask",
    "FusedCommits",
    "MemoryStorage",
    "QueryTask",
    "SqliteStorage",
    "Storage",
    "StorageCapabilities",
    "TimeSkipping",
    "VirtualClock",
    "WorkflowDescription",
    "WorkflowTask",
]
