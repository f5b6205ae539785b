"""Group commit over the native SQLite store.

Operations submitted while the store is busy (or during one pass of the event loop) run
together in one `BEGIN IMMEDIATE` transaction that commits once: many workflows' task outcomes
share one fsync. Every operation is native (`_sqlite_requests`, crate `mainspring-sqlite`): a
group runs on the store's own thread, without the interpreter, while the event loop goes on
with Python work; the loop learns that it finished from a socket it watches. One group at a
time: the next one is sent when the previous one's results are in, so operations take effect
in the order they were submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from typing import Any, TypeVar

from .. import _core
from ..errors import MainspringError, StorageError
from ._sqlite_requests import Request

ResultT = TypeVar("ResultT")
# An operation, the future its result goes to, and the caller's slots it leases into.
Pending = tuple[_core.SqliteOperation, asyncio.Future[Any], _core.SlotPool | None]

# A wave of operations (a thousand workflows started at once) is sent in groups of this many
# as it is submitted, so the store's thread commits the first groups while this thread still
# produces the rest. Smaller trickles wait for the group in flight and go together. A worker
# at its default 100 activity slots makes waves of about 100 (each slot's next commit): at
# 128 a whole wave waited for the end of the loop pass that made it, the store's thread idle
# meanwhile (0.82 of the throughput at 1,000 slots); at 64 its halves overlap (0.99). Smaller
# costs fsyncs: 48 lost 3.5% at 1,000 slots (BENCHMARKS.md, issue 10).
GROUP_LIMIT = 64


class LoopDatabase:
    def __init__(self, store: _core.SqliteStore) -> None:
        self._store: _core.SqliteStore | None = store
        self._pending: list[Pending] = []
        self._flush_scheduled = False
        # Groups on the store's thread, by ticket, in the order it runs them.
        self._in_flight: dict[int, list[Pending]] = {}
        self._tickets = 0
        self._watching: asyncio.AbstractEventLoop | None = None
        self._receiver: asyncio.Task[None] | None = None

    def submit(self, request: Request[ResultT]) -> asyncio.Future[ResultT]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        if self._watching is not loop and self._in_flight:
            self._wait_in_flight()  # sent from a loop that has gone away
        self._pending.append((request.operation, future, request.pool))
        if len(self._pending) >= GROUP_LIMIT:
            self._flush(wave=True)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            # After every callback already ready: whatever this pass submits joins the group.
            loop.call_soon(self._flush)
        return future

    def execute(self, sql: str, parameters: Any = ()) -> list[tuple[Any, ...]]:
        """Runs one SQL statement now, between groups (diagnostics and tests: the storage's
        own work goes through :meth:`submit`)."""
        self._wait_in_flight()
        if self._store is None:
            raise StorageError("the storage is closed")
        try:
            rows, _, _ = self._store.execute(sql, parameters)
        except _core.SqliteError as error:
            raise StorageError(f"SQLite failed: {error}") from error
        return rows

    def _flush(self, wave: bool = False) -> None:
        """Sends the pending operations: at the end of a loop pass when no group is in flight
        (else when its results are in), or at once when a wave filled a group."""
        if not wave:
            self._flush_scheduled = False
        if not self._pending or (self._in_flight and not wave):
            return
        group, self._pending = self._pending, []
        if self._store is None:
            _fail(group, StorageError("the storage is closed"))
        else:
            self._send(self._store, group)

    def _send(self, store: _core.SqliteStore, group: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        if self._watching is not loop:
            self._watch(loop, store)
        self._tickets += 1
        try:
            store.submit(self._tickets, [operation for operation, _, _ in group])
        except Exception as error:
            _fail(group, _typed(error))
            return
        self._in_flight[self._tickets] = group

    def _on_ready(self) -> None:
        self._take_results()
        # Send what gathered meanwhile at once: the store's thread works on it while this
        # thread runs the workflows the results just woke.
        self._flush()

    def _take_results(self) -> None:
        if self._store is None:
            return
        for ticket, outcomes in self._store.collect():
            _settle(self._in_flight.pop(ticket), outcomes)

    def _wait_in_flight(self) -> None:
        """Blocks until the groups on the store's thread finished (closing, or a new loop)."""
        while self._in_flight and self._store is not None:
            select.select([self._store.ready_fd()], [], [], 1.0)
            self._take_results()

    def _watch(self, loop: asyncio.AbstractEventLoop, store: _core.SqliteStore) -> None:
        """Has `loop` collect results when the store's socket becomes readable."""
        self._stop_watching()
        try:
            loop.add_reader(store.ready_fd(), self._on_ready)
        except NotImplementedError:
            # Windows' proactor loop has no readers: a task receives from the socket instead.
            self._receiver = loop.create_task(self._receive(store))
        self._watching = loop

    async def _receive(self, store: _core.SqliteStore) -> None:
        ready = socket.socket(fileno=store.ready_fd())
        try:
            while True:
                await asyncio.get_running_loop().sock_recv(ready, 64)
                self._on_ready()
        finally:
            ready.detach()  # the store owns the socket

    def _stop_watching(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            self._receiver = None
        elif self._watching is not None and self._store is not None:
            with contextlib.suppress(Exception):  # the loop may be closed already
                self._watching.remove_reader(self._store.ready_fd())
        self._watching = None

    def close(self) -> None:
        if self._store is None:
            return
        self._wait_in_flight()
        if self._pending:
            group, self._pending = self._pending, []
            try:
                outcomes = self._store.run_group([operation for operation, _, _ in group])
            except Exception as error:
                _fail(group, _typed(error))
            else:
                _settle(group, outcomes)
        self._stop_watching()
        self._store.close()
        self._store = None


def _settle(group: list[Pending], outcomes: list[tuple[bool, Any]]) -> None:
    for (_, future, pool), (succeeded, value) in zip(group, outcomes, strict=True):
        if future.done():
            # Its caller gave up (cancelled) while the store ran it: the attempts it leased
            # will never start here, so their slots go back (they lapse as attempts do).
            if succeeded and pool is not None:
                pool.give(_attempts_leased(value))
            continue
        with contextlib.suppress(RuntimeError):  # its loop is closed
            if succeeded:
                future.set_result(value)
            else:
                future.set_exception(value)


def _attempts_leased(value: Any) -> int:
    """The attempts a result leased into the caller's slots: an eager commit's and a poll's
    results both carry their leases second (``CommittedTuple``; ``(applied, leases)``)."""
    if isinstance(value, tuple) and len(value) > 1 and isinstance(value[1], list):
        return len(value[1])
    return 0


def _fail(group: list[Pending], error: Exception) -> None:
    for _, future, _ in group:
        if not future.done():
            with contextlib.suppress(RuntimeError):
                future.set_exception(error)


def _typed(error: Exception) -> Exception:
    if isinstance(error, MainspringError):
        return error
    if isinstance(error, _core.SqliteError):
        return StorageError(f"SQLite failed: {error}")
    return error
