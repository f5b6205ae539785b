"""Storage backends. Each implements :class:`Storage`; one conformance suite tests them all."""

from .base import ActivityTask, CommittedTask, QueryTask, Storage, WorkflowDescription, WorkflowTask
from .memory import MemoryStorage, VirtualClock
from .sqlite import SqliteStorage

__all__ = [
    "ActivityTask",
    "CommittedTask",
    "MemoryStorage",
    "QueryTask",
    "SqliteStorage",
    "Storage",
    "VirtualClock",
    "WorkflowDescription",
    "WorkflowTask",
]
