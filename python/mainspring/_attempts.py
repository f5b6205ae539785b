"""One running activity attempt's worker-side state: its heartbeats (throttled, made on first
use: most attempts never heartbeat) and its deadline (watched by one timer per worker, armed
for the earliest, not one per attempt)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from ._heartbeats import HeartbeatThrottle, throttle_interval
from .activity_context import ActivityContext
from .storage.base import ActivityTask

logger = logging.getLogger("mainspring.worker")


class Attempt:
    __slots__ = ("_closed", "_loop", "_throttle", "context", "deadline_at", "deadline_passed",
                 "is_async", "runner", "task", "write")  # fmt: skip

    def __init__(
        self,
        task: ActivityTask,
        deadline_at: float,
        write: Callable[[Attempt, bytes], Coroutine[Any, Any, None]],
    ) -> None:
        self.task = task
        self.write = write
        self.deadline_at = deadline_at  # on the worker's loop clock; inf: none
        self.deadline_passed = False
        self._closed = False
        self._throttle: HeartbeatThrottle | None = None
        # Set by the runner right after: its task, and the context made with this attempt's
        # heartbeat.
        self.runner: asyncio.Task[Any] | None = None
        self.is_async = True
        self.context: ActivityContext | None = None

    def __call__(self, details: bytes) -> None:
        """``ctx.heartbeat`` the first time (the attempt is the context's sender, so that no
        bound method is made per attempt): binds it to the worker's loop."""
        runner = self.runner
        self._loop = runner.get_loop() if runner is not None else asyncio.get_event_loop()
        if self.context is not None:
            self.context._send_heartbeat = self.heartbeat
        self.heartbeat(details)

    def heartbeat(self, details: bytes) -> None:
        """``ctx.heartbeat``: from the worker's loop or from an activity thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._record(details)
            return
        # From a thread: recorded before its outcome (callbacks run in order). After shutdown
        # the loop is closed and nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._record, details)

    def _record(self, details: bytes) -> None:
        if self._closed:
            return  # the attempt reported its outcome: a late heartbeat is not written
        throttle = self._throttle
        if throttle is None:
            throttle = self._throttle = HeartbeatThrottle(
                self._loop,
                throttle_interval(self.task.heartbeat_timeout_ms),
                lambda details: self.write(self, details),
            )
        throttle.record(details)

    async def flush(self) -> None:
        """Writes the latest unsent details (before a failure is reported)."""
        self._closed = True
        if self._throttle is not None:
            await self._throttle.flush()

    def close(self) -> None:
        self._closed = True
        if self._throttle is not None:
            self._throttle.close()

    def overran(self) -> None:
        """The attempt's deadline passed on the worker's clock."""
        context = self.context
        if context is None or context._returned:
            return
        self.deadline_passed = True
        logger.info(
            "activity %s (attempt %d) ran past its deadline; cancelled",
            self.task.activity_type,
            self.task.attempt,
        )
        context._mark_cancelled()
        runner = self.runner
        if self.is_async and runner is not None and not runner.done():
            runner.cancel()


class DeadlineWatch:
    """The deadlines of a worker's running attempts, on one timer armed for the earliest: an
    attempt that starts adds a comparison, not a timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, running: dict[Any, Attempt]) -> None:
        self._loop = loop
        self._running = running
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def started(self, attempt: Attempt) -> None:
        if attempt.deadline_at < self._timer_at:
            self._arm(attempt.deadline_at)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self._loop.time()
        earliest = math.inf
        for attempt in list(self._running.values()):
            if attempt.deadline_at <= now:
                attempt.deadline_at = math.inf
                try:
                    attempt.overran()
                except Exception:  # one attempt's trouble must not stop the watch
                    logger.exception("ending an overrunning activity attempt failed")
            elif attempt.deadline_at < earliest:
                earliest = attempt.deadline_at
        if earliest < math.inf:
            self._arm(earliest)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf
