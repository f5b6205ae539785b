"""Storage URLs: one way to name a store for `Client`, the CLI (``--db``) and ``$MAINSPRING_DB``.

============================================  ==============================================
``memory:``                                   a :class:`MemoryStorage` (this process only)
``sqlite:///relative/app.db``                 a :class:`SqliteStorage` file, relative to the
                                              working directory (SQLAlchemy's convention)
``sqlite:////absolute/path/app.db``           the same, at an absolute path
``app.db``, ``./data/app.db``, ``/srv/app.db``  a plain path: a SQLite file, as before URLs
``postgresql://user@host:port/db?schema=s``   a :class:`PostgresStorage` (also
                                              ``postgres://``); ``schema`` (default
                                              ``mainspring``) is Mainspring's and is taken out
                                              before the DSN reaches asyncpg, as are
                                              ``migrate=false`` (never migrate on start),
                                              ``pool_size=N`` and ``pgbouncer=true``
============================================  ==============================================

Anything else with a scheme is refused, naming these forms, rather than taken for a file path
(``postgresql://u@h/db`` read as a path would make the folders ``postgresql:/u@h/``).
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import InvalidStorageUrlError
from .base import Storage

__all__ = ["open_storage", "postgres_dsn", "sqlite_path"]

#: The forms an error names.
ACCEPTED = (
    "memory:, sqlite:///relative.db, sqlite:////absolute/path.db, a plain file path (SQLite), "
    "postgresql://user@host:port/database?schema=mainspring"
)

# A scheme as RFC 3986 spells it. One letter is a Windows drive (C:\...), not a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def _scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def sqlite_path(url: str | os.PathLike[str]) -> str:
    """The SQLite file a ``sqlite:`` URL or a plain path names."""
    text = os.fspath(url)
    scheme = _scheme(text)
    if scheme is None:
        if not text:
            raise InvalidStorageUrlError(f"an empty storage URL; accepted: {ACCEPTED}")
        return text
    if scheme != "sqlite":
        raise InvalidStorageUrlError(f"{text!r} is not a SQLite URL; accepted: {ACCEPTED}")
    if not text.lower().startswith("sqlite:///") or len(text) == len("sqlite:///"):
        raise InvalidStorageUrlError(
            f"{text!r}: a SQLite URL names its file after three slashes (sqlite:///app.db, "
            "relative; sqlite:////srv/app.db, absolute)"
        )
    return text[len("sqlite:///") :]


def postgres_dsn(url: str) -> tuple[str, dict[str, Any]]:
    """The DSN to give asyncpg, and the options Mainspring's own parameters set, taken out of
    it: ``schema`` (the Postgres schema), ``migrate`` (``true``, the default, or ``false``:
    never change the schema on start), ``pool_size`` (connections pooled; by default sized
    from the workers running on the store) and ``pgbouncer`` (``true``: behind pgbouncer in
    transaction mode)."""
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "schema":
            options["schema"] = value
        elif name == "pool_size":
            if not value.isdigit() or int(value) < 1:
                raise InvalidStorageUrlError(f"pool_size={value!r}: a positive number")
            options["pool_size"] = int(value)
        elif name in ("migrate", "pgbouncer"):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidStorageUrlError(f"{name}={value!r}: true or false")
            options[name] = value.lower() in ("true", "1")
        else:
            kept.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), options


def open_storage(url: str | os.PathLike[str], **options: Any) -> Storage:
    """The storage ``url`` names (see the module's table); ``options`` go to its constructor
    (for example ``clock=`` or ``poll_interval=``)."""
    text = os.fspath(url)
    scheme = _scheme(text)
    if scheme == "memory":
        if text.lower() != "memory:":
            raise InvalidStorageUrlError(f"{text!r}: the memory store is just 'memory:'")
        from .memory import MemoryStorage

        return MemoryStorage(**options)
    if scheme is None or scheme == "sqlite":
        from .sqlite import SqliteStorage

        return SqliteStorage(sqlite_path(text), **options)
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresStorage
        except ImportError as error:
            raise InvalidStorageUrlError(
                f"{text!r} needs the PostgreSQL driver: pip install 'mainspring[postgres]'"
            ) from error
        dsn, own = postgres_dsn(text)
        return PostgresStorage(dsn, **{**own, **options})
    raise InvalidStorageUrlError(
        f"{text!r} is not a storage Mainspring knows ({scheme}:); accepted: {ACCEPTED}"
    )
