"""Reads made by many callers at once, made as one statement: every key asked for in one pass
of the event loop is read by one statement with the keys as an array (a service awaiting a
thousand results reads their runs in a few round trips, not a thousand)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

KeyT = TypeVar("KeyT", bound=Hashable)

#: Reads the keys given; returns what was found, by key (a missing key: nothing found).
ReadMany = Callable[[list[Any]], Awaitable[dict[Any, Any]]]


class Batched(Generic[KeyT]):
    def __init__(self, read_many: ReadMany) -> None:
        self._read_many = read_many
        self._pending: dict[KeyT, list[asyncio.Future[Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, key: KeyT) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.setdefault(key, []).append(future)
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._read(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, pending: dict[KeyT, list[asyncio.Future[Any]]]) -> None:
        try:
            found = await self._read_many(list(pending))
        except BaseException as error:
            for futures in pending.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        for key, futures in pending.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(key))
