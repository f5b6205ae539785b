"""One running activity attempt's worker-side state: its heartbeats (throttled, made on first
use: most attempts never heartbeat) and its deadline (watched by one timer per worker, not one
per attempt)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ._heartbeats import HeartbeatThrottle, throttle_interval
from .activity_context import ActivityContext
from .storage.base import ActivityTask

logger = logging.getLogger("mainspring.worker")


class Attempt:
    __slots__ = ("_loop", "_throttle", "context", "deadline_passed", "is_async", "runner", "task",
                 "write")  # fmt: skip

    def __init__(
        self, task: ActivityTask, runner: asyncio.Task[Any] | None, is_async: bool
    ) -> None:
        self.task = task
        self.runner = runner
        self.is_async = is_async
        self.deadline_passed = False
        self._throttle: HeartbeatThrottle | None = None
        # Set by the runner right after: the context is made with this attempt's heartbeat.
        self.context: ActivityContext
        self.write: Callable[[Attempt, bytes], Coroutine[Any, Any, None]]

    def first_heartbeat(self, details: bytes) -> None:
        """``ctx.heartbeat`` the first time: binds the attempt to the worker's loop."""
        runner = self.runner
        self._loop = runner.get_loop() if runner is not None else asyncio.get_event_loop()
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
        if self._throttle is not None:
            await self._throttle.flush()

    def close(self) -> None:
        if self._throttle is not None:
            self._throttle.close()

    def overran(self) -> None:
        """The attempt's deadline passed on the worker's clock."""
        if self.context._returned:
            return
        self.deadline_passed = True
        logger.info(
            "activity %s (attempt %d) ran past its deadline; cancelled",
            self.task.activity_type,
            self.task.attempt,
        )
        self.context._mark_cancelled()
        runner = self.runner
        if self.is_async and runner is not None and not runner.done():
            runner.cancel()


class DeadlineWatch:
    """The deadlines of a worker's running attempts, on one timer: the earliest's."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Attempt]] = []
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def watch(self, attempt: Attempt, remaining_seconds: float) -> None:
        at = self._loop.time() + max(0.0, remaining_seconds)
        self._count += 1
        heapq.heappush(self._heap, (at, self._count, attempt))
        if self._timer is None or at < self._timer_at:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        heap = self._heap
        now = self._loop.time()
        while heap and heap[0][0] <= now:
            _, _, attempt = heapq.heappop(heap)
            if attempt.runner is not None and not attempt.runner.done():
                attempt.overran()
        while heap and (heap[0][2].runner is None or heap[0][2].runner.done()):
            heapq.heappop(heap)  # attempts that ended: their entries go with no timer
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
