"""Helpers for testing workflows: time skipping over a :class:`VirtualClock`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .storage.base import TimeSkipping

__all__ = ["time_skipping"]


@contextlib.asynccontextmanager
async def time_skipping(storage: TimeSkipping) -> AsyncIterator[None]:
    """While inside, whenever nothing is ready or running, jumps the storage's virtual clock to
    the next timer or timeout, so a workflow that sleeps for a month finishes in milliseconds.

    Like Temporal's time-skipping test server: time only moves while the workers are idle, so
    results are what real time would give.
    """

    async def skip_forever() -> None:
        while True:
            # Taken before looking, so a change made while we look is not missed.
            changed = storage.wait_for_change()
            await storage.skip_to_next_wakeup()
            await changed

    skipper = asyncio.get_running_loop().create_task(skip_forever())
    try:
        yield
    finally:
        skipper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await skipper
