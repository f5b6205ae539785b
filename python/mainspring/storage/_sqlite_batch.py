"""Group commit over the native SQLite store.

Operations submitted while the store is busy (or during one pass of the event loop) run
together in one `BEGIN IMMEDIATE` transaction that commits once: many workflows' task outcomes
share one fsync. The operations every workflow goes through are native (`NativeOperation`, in
the `mainspring-sqlite` crate): a group made only of those runs on the store's own thread,
without the interpreter, while the event loop goes on with Python work; the loop learns that it
finished from a socket it watches. A group holding any Python operation (the rarely used ones)
runs on the loop's thread, native operations inline. One group at a time: the next one is
sent when the previous one's results are in.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .. import _core
from ..errors import MainspringError, StorageError

Operation = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]


class Cursor:
    """The rows of one statement, read at once (what the Python operations use of
    `sqlite3.Cursor`)."""

    __slots__ = ("_rows", "lastrowid", "rowcount")

    def __init__(self, rows: list[tuple[Any, ...]], lastrowid: int, rowcount: int) -> None:
        self._rows, self.lastrowid, self.rowcount = rows, lastrowid, rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class Connection:
    """The subset of `sqlite3.Connection` the Python operations and migrations use, on the
    native store's connection (one SQLite library per process: see ARCHITECTURE.md)."""

    def __init__(self, store: _core.SqliteStore) -> None:
        self.store = store

    def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return Cursor(*self.store.execute(sql, parameters))

    def executemany(self, sql: str, parameter_sets: Iterable[Any]) -> None:
        self.store.executemany(sql, parameter_sets)


class NativeOperation:
    """An operation the native store implements; called like a Python one (inside a group run
    on the loop's thread), or sent with its group to the store's thread."""

    def __init__(self, name: str, *, read_only: bool = False) -> None:
        self.name = name
        self.read_only = read_only

    def __call__(self, db: Connection, now: int, *args: Any) -> Any:
        return db.store.run(self.name, now, args)


# A wave of operations (a thousand workflows started at once) is sent in groups of this many
# as it is submitted, so the store's thread commits the first groups while this thread still
# produces the rest. Smaller trickles wait for the group in flight and go together.
GROUP_LIMIT = 128


class LoopDatabase:
    def __init__(self, store: _core.SqliteStore) -> None:
        self._store: _core.SqliteStore | None = store
        self.connection = Connection(store)
        self._pending: list[Operation] = []
        self._flush_scheduled = False
        # Groups on the store's thread, by ticket, in the order it runs them.
        self._in_flight: dict[int, list[Operation]] = {}
        self._tickets = 0
        self._watching: asyncio.AbstractEventLoop | None = None
        self._receiver: asyncio.Task[None] | None = None

    def submit(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._watching is not loop and self._in_flight:
            self._wait_in_flight()  # sent from a loop that has gone away
        self._pending.append((function, args, future))
        if len(self._pending) >= GROUP_LIMIT and isinstance(function, NativeOperation):
            self._flush(wave=True)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            # After every callback already ready: whatever this pass submits joins the group.
            loop.call_soon(self._flush)
        return future

    def _flush(self, wave: bool = False) -> None:
        """Sends the pending operations: at the end of a loop pass when no group is in flight
        (else when its results are in), or at once when a wave filled a group."""
        if not wave:
            self._flush_scheduled = False
        if not self._pending or (self._in_flight and not wave):
            return
        native = all(isinstance(function, NativeOperation) for function, _, _ in self._pending)
        if self._in_flight and not native:
            return  # a group on this thread waits for the store's thread to finish
        group, self._pending = self._pending, []
        if self._store is None:
            _fail(group, StorageError("the storage is closed"))
        elif native:
            self._send(self._store, group)
        else:
            run_group(self.connection, group)

    def _send(self, store: _core.SqliteStore, group: list[Operation]) -> None:
        loop = asyncio.get_running_loop()
        if self._watching is not loop:
            self._watch(loop, store)
        self._tickets += 1
        requests = [(function.name, args[0], args[1:]) for function, args, _ in group]  # type: ignore[attr-defined]
        try:
            store.submit(self._tickets, requests)
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
            group = self._in_flight.pop(ticket)
            for (_, _, future), (succeeded, value) in zip(group, outcomes, strict=True):
                if future.done():
                    continue
                with contextlib.suppress(RuntimeError):  # its loop is closed
                    if succeeded:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

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
            run_group(self.connection, group)
        self._stop_watching()
        self._store.close()
        self._store = None


def _fail(group: list[Operation], error: Exception) -> None:
    for _, _, future in group:
        if not future.done():
            future.set_exception(error)


def run_group(connection: Connection, group: list[Operation]) -> None:
    """Runs the group in one transaction on this thread. First without savepoints (the common
    case: nothing fails); if an operation raises, the transaction is rolled back and the group
    re-run with a savepoint per operation, so only the failing ones are undone."""
    outcomes: list[tuple[bool, Any]] | None
    try:
        outcomes = _run_all(connection, group, isolate=False)
        if outcomes is None:
            outcomes = _run_all(connection, group, isolate=True)
        assert outcomes is not None, "an isolated run always completes"
    except _core.SqliteError as error:
        # The file itself failed (disk full, locked past the busy timeout, corrupt): nothing in
        # this group was committed.
        with contextlib.suppress(_core.SqliteError, StorageError):
            connection.execute("ROLLBACK")
        _fail(group, StorageError(f"SQLite failed; nothing was committed: {error}"))
        return
    except StorageError as error:  # the store itself refused (closed, or used after fork)
        _fail(group, error)
        return
    for (_, _, future), (succeeded, value) in zip(group, outcomes, strict=True):
        if future.done():
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)


def _run_all(
    connection: Connection, group: list[Operation], isolate: bool
) -> list[tuple[bool, Any]] | None:
    """One transaction over the group. Without `isolate`, returns None (having rolled back)
    as soon as an operation fails."""
    outcomes: list[tuple[bool, Any]] = []
    # A group of reads needs no write lock: it neither waits for other processes' writers nor
    # makes them wait, and its commit syncs nothing.
    reads_only = all(getattr(function, "read_only", False) for function, _, _ in group)
    connection.execute("BEGIN" if reads_only else "BEGIN IMMEDIATE")
    for function, args, _ in group:
        if not isolate:
            try:
                outcomes.append((True, function(connection, *args)))
            except Exception:
                connection.execute("ROLLBACK")
                return None
            continue
        connection.execute("SAVEPOINT operation")
        try:
            outcomes.append((True, function(connection, *args)))
            connection.execute("RELEASE operation")
        except Exception as error:
            connection.execute("ROLLBACK TO operation")
            connection.execute("RELEASE operation")
            outcomes.append((False, _typed(error)))
    connection.execute("COMMIT")
    return outcomes


OperationT = TypeVar("OperationT", bound=Callable[..., Any])


def read_only(function: OperationT) -> OperationT:
    """Marks an operation that only reads (see :func:`run_group`)."""
    function.read_only = True  # type: ignore[attr-defined]
    return function


def _typed(error: Exception) -> Exception:
    if isinstance(error, MainspringError):
        return error
    if isinstance(error, _core.SqliteError):
        return StorageError(f"SQLite failed: {error}")
    return error
