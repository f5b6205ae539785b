"""The one thread that talks to the SQLite file, with group commit.

Operations queue up from the event loop; the thread takes every operation waiting, runs them in
one `BEGIN IMMEDIATE` transaction (each under its own savepoint, so one failing operation rolls
back alone) and commits once. Under load, many workflows' task outcomes share one fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from ..errors import MainspringError, StorageError

Operation = tuple[
    Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]
]

# Most operations per transaction: bounds how long one commit holds the write lock.
_MAXIMUM_GROUP = 512


class DatabaseThread:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Operation | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="mainspring-sqlite", daemon=True)
        self._started = threading.Event()
        self._open_error: BaseException | None = None
        self._thread.start()
        self._started.wait()
        if self._open_error is not None:
            raise self._open_error

    def submit(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((function, args, loop, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        try:
            connection = self._connect()
        except BaseException as error:
            self._open_error = error
            self._started.set()
            return
        self._started.set()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while len(group) < _MAXIMUM_GROUP:
                    try:
                        operation = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if operation is None:
                        stop = True
                        break
                    group.append(operation)
                self._run_group(connection, group)
                if stop:
                    return
        finally:
            connection.close()

    def _run_group(self, connection: sqlite3.Connection, group: list[Operation]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for function, args, _, _ in group:
                connection.execute("SAVEPOINT operation")
                try:
                    outcomes.append((True, function(connection, *args)))
                    connection.execute("RELEASE operation")
                except Exception as error:
                    connection.execute("ROLLBACK TO operation")
                    connection.execute("RELEASE operation")
                    outcomes.append((False, _typed(error)))
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            # The file itself failed (disk full, locked past the busy timeout, corrupt):
            # nothing in this group was committed.
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            failure = StorageError(f"SQLite failed; nothing was committed: {error}")
            outcomes = [(False, failure)] * len(group)
        for (_, _, loop, future), (succeeded, value) in zip(group, outcomes, strict=True):
            # A closed loop means nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, succeeded, value)


def _typed(error: Exception) -> Exception:
    if isinstance(error, MainspringError):
        return error
    if isinstance(error, sqlite3.Error):
        return StorageError(f"SQLite failed: {error}")
    return error


def _settle(future: asyncio.Future[Any], succeeded: bool, value: Any) -> None:
    if future.done():
        return
    if succeeded:
        future.set_result(value)
    else:
        future.set_exception(value)
