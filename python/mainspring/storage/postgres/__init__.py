"""The PostgreSQL store (``pip install 'mainspring[postgres]'``): many worker processes on many
machines against one database. See :class:`PostgresStorage`."""

from __future__ import annotations

try:
    import asyncpg  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "PostgresStorage needs asyncpg: pip install 'mainspring[postgres]'"
    ) from error

from ._schema import SCHEMA_VERSION
from ._storage import PostgresStorage
from ._tables import DEFAULT_POOL_SIZE

__all__ = ["DEFAULT_POOL_SIZE", "SCHEMA_VERSION", "PostgresStorage"]
