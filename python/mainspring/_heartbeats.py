"""Heartbeats of one activity attempt, throttled as temporalio's are.

The first heartbeat is written at once; later ones at most once per interval (80% of the
attempt's heartbeat timeout, or 30 s without one), with at most one write in flight and the
latest details winning. Before a failure is reported the latest unsent details are written, so
the next attempt resumes from them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger("mainspring.worker")

_DEFAULT_INTERVAL_SECONDS = 30.0
_INTERVAL_SHARE = 0.8


def throttle_interval(heartbeat_timeout_ms: int | None) -> float:
    if heartbeat_timeout_ms is None or heartbeat_timeout_ms <= 0:
        return _DEFAULT_INTERVAL_SECONDS
    return heartbeat_timeout_ms / 1000 * _INTERVAL_SHARE


class HeartbeatThrottle:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval_seconds: float,
        write: Callable[[bytes], Coroutine[Any, Any, None]],
    ) -> None:
        self._loop = loop
        self._interval = interval_seconds
        self._write = write
        self._pending: bytes | None = None
        self._last_write_at: float | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def record(self, details: bytes) -> None:
        """Takes the latest details (on the loop's thread)."""
        if self._closed:
            return
        self._pending = details
        self._schedule()

    def _schedule(self) -> None:
        if self._pending is None or self._in_flight is not None or self._timer is not None:
            return  # nothing to send, or a write or a wake-up already on its way
        due = (
            self._loop.time()
            if self._last_write_at is None
            else self._last_write_at + self._interval
        )
        delay = due - self._loop.time()
        if delay <= 0:
            self._send()
        else:
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._closed:
            self._send()

    def _send(self) -> None:
        details, self._pending = self._pending, None
        if details is None:
            return
        self._last_write_at = self._loop.time()
        self._in_flight = self._loop.create_task(self._write(details))
        self._in_flight.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._in_flight = None
        error = None if task.cancelled() else task.exception()
        if error is not None:  # the writer handles storage errors; anything else is a bug
            logger.error("a heartbeat write failed", exc_info=error)
        if not self._closed:
            self._schedule()

    async def flush(self) -> None:
        """Writes the latest unsent details now (before a failure is reported), then stops."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._in_flight is not None:
            await asyncio.wait({self._in_flight})
        details, self._pending = self._pending, None
        if details is not None:
            try:
                await self._write(details)
            except Exception:  # the failure report goes on regardless
                logger.exception("writing the last heartbeat before a failure failed")

    def close(self) -> None:
        """Stops: nothing more is written (the attempt completed or is over)."""
        self._closed = True
        self._pending = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
