"""What activity code uses: :class:`ActivityContext`, passed as the first parameter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import _payload

__all__ = ["ActivityContext", "ActivityInfo"]


@dataclass(frozen=True)
class ActivityInfo:
    """Facts about this attempt. ``attempt`` starts at 1 and grows with each retry."""

    activity_id: str
    activity_type: str
    workflow_id: str
    run_id: str
    task_queue: str
    attempt: int
    scheduled_time: datetime
    started_time: datetime
    deadline: datetime | None
    heartbeat_timeout: timedelta | None


class ActivityContext:
    """Activities run at least once: an attempt cut short by a crash or timeout is retried.
    Use ``info.attempt`` and ``heartbeat_details`` to resume work instead of redoing it."""

    def __init__(
        self,
        info: Callable[[], ActivityInfo],
        heartbeat_details: bytes,
        send_heartbeat: Callable[[bytes], None],
    ) -> None:
        self._make_info = info
        self._info: ActivityInfo | None = None
        self._heartbeat_details = heartbeat_details
        self._send_heartbeat = send_heartbeat
        # A plain flag: set once, from the worker's loop; reads from activity threads are safe.
        self._cancelled = False
        # Set by the worker once the activity function has returned.
        self._returned = False

    @property
    def info(self) -> ActivityInfo:
        """Facts about this attempt (built on first use)."""
        if self._info is None:
            self._info = self._make_info()
        return self._info

    def heartbeat(self, details: Any = None) -> None:
        """Reports progress (and liveness, for ``heartbeat_timeout``). ``details`` are handed to
        the next attempt as ``heartbeat_details`` if this one fails. Safe from threads."""
        self._send_heartbeat(_payload.encode(details))

    @property
    def heartbeat_details(self) -> Any:
        """Details from the last heartbeat of an earlier attempt, or ``None``."""
        if not self._heartbeat_details:
            return None
        return _payload.decode(self._heartbeat_details)

    def heartbeat_details_as(self, type_: type[Any]) -> Any:
        """``heartbeat_details`` decoded to ``type_``."""
        if not self._heartbeat_details:
            return None
        return _payload.decode(self._heartbeat_details, type_)

    @property
    def is_cancelled(self) -> bool:
        """True once the workflow cancelled this activity or this attempt timed out; a heartbeat
        is how the worker learns it, so long activities should heartbeat."""
        return self._cancelled

    def _mark_cancelled(self) -> None:
        self._cancelled = True
