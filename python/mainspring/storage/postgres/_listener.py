"""Wake-ups from other processes: one dedicated connection (not a pooled one) LISTENs on the
schema's channel; each notification another process's commit sent wakes this process's
pollers and waiters.

A notification is only a hint. The connection is health-checked every ``health_seconds``;
when it is lost it is made again with a growing pause and LISTENs again, and, since
notifications sent in between are gone, everyone is woken once to look for themselves.
Pollers and waiters also look again within their poll interval, so a lost notification
delays work by at most that, and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("mainspring.storage.postgres")


class Listener:
    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        channel: str,
        origin: str,
        on_notice: Callable[[], None],
        on_closed: Callable[[str], None],
        on_gap: Callable[[], None],
        *,
        health_seconds: float = 5.0,
        reconnect_maximum_seconds: float = 5.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._origin = origin
        self._on_notice = on_notice
        self._on_closed = on_closed
        self._on_gap = on_gap
        self._health_seconds = health_seconds
        self._reconnect_maximum = reconnect_maximum_seconds
        self._connection: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        #: How many times the connection was made again (for tests and logs).
        self.reconnects = 0

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._watch(), name="mainspring-postgres-listener")

    async def _listen(self) -> None:
        connection = await self._connect()
        try:
            await connection.add_listener(self._channel, self._notified)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        connection.add_termination_listener(self._terminated)
        self._lost.clear()
        self._connection = connection

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        # "ORIGIN" (work was queued) or "ORIGIN RUN_ID ..." (those runs closed); this store's
        # own changes woke its waiters already.
        origin, *closed_runs = payload.split(" ")
        if origin == self._origin:
            return
        self._on_notice()
        for run_id in closed_runs:
            self._on_closed(run_id)

    def _terminated(self, connection: Any) -> None:
        self._lost.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._health_seconds)
            if not self._lost.is_set():
                try:
                    await asyncio.wait_for(self._connection.fetchval("SELECT 1"), 5)
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # whatever it was, the connection is not to trust
                    logger.warning("the PostgreSQL listener's connection failed: %s", error)
            await self._reconnect()

    async def _reconnect(self) -> None:
        old, self._connection = self._connection, None
        if old is not None:
            with contextlib.suppress(Exception):
                old.terminate()
        pause = 0.05
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning(
                    "cannot LISTEN on PostgreSQL yet (again in %.2f s): %s", pause, error
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, self._reconnect_maximum)
                continue
            self.reconnects += 1
            self._on_gap()  # what was sent while nobody listened is gone: everyone looks again
            return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)
