"""What the PostgreSQL store reports when the driver or the server fails: a
:class:`~mainspring.errors.StorageError` (nothing committed) or, when the connection dropped
after a commit was sent, a :class:`~mainspring.errors.CommitUnknownError`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from ...errors import CommitUnknownError, MainspringError, StorageError

#: The failures that mean the connection (or the server) went away, not that a statement was
#: refused: a commit that meets one may have been applied.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection the server cut that the pool handed out before the driver saw it close.
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


@contextlib.asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Driver and server failures inside become :class:`StorageError` naming ``what`` was
    being done; Mainspring's own errors pass through."""
    try:
        yield
    except MainspringError:
        raise
    except (asyncpg.PostgresError, *CONNECTION_LOST) as error:
        raise StorageError(
            f"PostgreSQL failed to {what}: {type(error).__name__}: {error}"
        ) from error


def server_process(connection: Any) -> int | None:
    """The server's process behind a connection (read before it is used: a lost one's proxy
    no longer says)."""
    try:
        pid: int = connection.get_server_pid()
    except Exception:
        return None
    return pid


def lost(connection: Any) -> None:
    """A connection given up on mid-commit (dropped, or silent past the timeout) is closed at
    once, never used again: its server process sees it gone, and nothing it still carries
    arrives later."""
    with contextlib.suppress(Exception):
        connection.terminate()


def commit_unknown(
    what: str, error: BaseException, process: int | None = None
) -> CommitUnknownError:
    unknown = CommitUnknownError(
        f"the connection to PostgreSQL dropped while committing ({what}): the writes may or "
        f"may not have been committed ({type(error).__name__}: {error})"
    )
    unknown.server_process = process
    return unknown
