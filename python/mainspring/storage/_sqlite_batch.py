"""Group commit on the event loop's own thread.

Operations submitted during one pass of the event loop run together, at the end of that pass,
in one `BEGIN IMMEDIATE` transaction (a savepoint each, so one failing operation rolls back
alone) that commits once. Many workflows' task outcomes share one fsync, and no thread
hand-off (and its GIL wait) sits between a worker and its database: each operation is tens of
microseconds of SQLite work, so running it on the loop costs less than sending it elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import MainspringError, StorageError

Operation = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]


class LoopDatabase:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connection: sqlite3.Connection | None = connect()
        self._pending: list[Operation] = []
        self._flush_scheduled = False

    def submit(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((function, args, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # After every callback already ready: whatever this pass submits joins the group.
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        group, self._pending = self._pending, []
        connection = self._connection
        if connection is None:
            for _, _, future in group:
                if not future.done():
                    future.set_exception(StorageError("the storage is closed"))
            return
        run_group(connection, group)

    def close(self) -> None:
        if self._pending:
            self._flush()
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def run_group(connection: sqlite3.Connection, group: list[Operation]) -> None:
    """Runs the group in one transaction. First without savepoints (the common case: nothing
    fails); if an operation raises, the transaction is rolled back and the group re-run with a
    savepoint per operation, so only the failing ones are undone."""
    outcomes: list[tuple[bool, Any]] | None
    try:
        outcomes = _run_all(connection, group, isolate=False)
        if outcomes is None:
            outcomes = _run_all(connection, group, isolate=True)
        assert outcomes is not None, "an isolated run always completes"
    except sqlite3.Error as error:
        # The file itself failed (disk full, locked past the busy timeout, corrupt): nothing in
        # this group was committed.
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        failure = StorageError(f"SQLite failed; nothing was committed: {error}")
        outcomes = [(False, failure)] * len(group)
    for (_, _, future), (succeeded, value) in zip(group, outcomes, strict=True):
        if future.done():
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)


def _run_all(
    connection: sqlite3.Connection, group: list[Operation], isolate: bool
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
    if isinstance(error, sqlite3.Error):
        return StorageError(f"SQLite failed: {error}")
    return error
