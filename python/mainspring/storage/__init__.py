"""Storage backends. Each implements :class:`Storage`; one conformance suite tests them all."""

from .base import ActivityTask, QueryTask, Storage, WorkflowDescription, WorkflowTask
from .memory import MemoryStorage, VirtualClock

__all__ = [
    "ActivityTask",
    "MemoryStorage",
    "QueryTask",
    "Storage",
    "VirtualClock",
    "WorkflowDescription",
    "WorkflowTask",
]
