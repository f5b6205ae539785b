"""Mainspring: durable execution for Python with a Rust core.

Write workflows as ``async def`` functions; every step is recorded in an event history, so a
workflow survives crashes and restarts and resumes where it stopped by replaying that history.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._definitions import activity, workflow
from ._instance import WorkflowInfo
from .activity_context import ActivityContext, ActivityInfo
from .client import Client, WorkflowHandle
from .history import History
from .messages import Query, Signal
from .replayer import Replayer
from .retry import RetryPolicy
from .storage.base import WorkflowDescription, WorkflowExecutionStatus
from .worker import Worker, WorkerConfig, WorkerStats
from .workflow_context import ActivityHandle, WorkflowContext

__all__ = [
    "ActivityContext",
    "ActivityHandle",
    "ActivityInfo",
    "Client",
    "History",
    "Query",
    "Replayer",
    "RetryPolicy",
    "Signal",
    "Worker",
    "WorkerConfig",
    "WorkerStats",
    "WorkflowContext",
    "WorkflowDescription",
    "WorkflowExecutionStatus",
    "WorkflowHandle",
    "WorkflowInfo",
    "activity",
    "run",
    "workflow",
]

ResultT = TypeVar("ResultT")


def run(main: Coroutine[Any, Any, ResultT]) -> ResultT:
    """Runs ``main`` like ``asyncio.run``, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    uvloop.install()  # pragma: no cover - Python 3.10
    return asyncio.run(main)
