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
from ._storage import DEFAULT_POOL_SIZE, PostgresStorage

__all__ = ["DEFAULT_POOL_SIZE", "SCHEMA_VERSION", "PostgresStorage"]
