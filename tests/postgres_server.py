"""The PostgreSQL server the tests use: `$MAINSPRING_TEST_POSTGRES`, else the cluster
`scripts/services.sh start` runs (the README's test command starts it). Each test gets a
schema of its own, dropped when its storage closes.

Where no server answers, PostgreSQL's tests skip, except in CI (`CI=true`), where a missing
server fails them: CI must not pass by testing less.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import secrets

import pytest

from mainspring.storage import VirtualClock

POSTGRES_DSN = os.environ.get(
    "MAINSPRING_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:54329/postgres"
)


@functools.cache
def _server_problem() -> str | None:
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install 'mainspring[postgres]')"

    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        await connection.close()

    # On a thread of its own: the caller (a fixture) may be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        try:
            thread.submit(lambda: asyncio.run(probe())).result()
        except Exception as error:
            return f"no PostgreSQL at {POSTGRES_DSN} ({error}): scripts/services.sh start"
    return None


def require_postgres() -> None:
    """Skips the test when no server answers (fails it in CI)."""
    problem = _server_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def new_schema() -> str:
    return f"test_{secrets.token_hex(6)}"


def postgres_storage(
    clock: VirtualClock | None = None,
    schema: str | None = None,
    *,
    owner: bool = True,
    identity: str | None = None,
) -> object:
    """A `PostgresStorage` in a new schema (or `schema`); the owner drops it on close."""
    require_postgres()
    from mainspring.storage.postgres import PostgresStorage

    class TestPostgresStorage(PostgresStorage):
        async def close(self) -> None:
            await super().close()
            if owner:
                await drop_schema(self.schema)

    return TestPostgresStorage(
        POSTGRES_DSN, schema=schema or new_schema(), clock=clock, identity=identity
    )


async def drop_schema(schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()
