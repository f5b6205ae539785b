"""Storage backends. Each implements :class:`Storage`; one conformance suite tests them all."""

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

__all__ = [
    "WORKFLOW_STATUSES",
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
    "WorkflowPage",
    "WorkflowTask",
]
