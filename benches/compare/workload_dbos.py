"""The comparison's workload on DBOS Transact: a workflow of 3 no-op steps, executor and client
in this process, DBOS's defaults, its system database on SQLite (a file in a temporary folder)
or on PostgreSQL (a database of its own, ``dbos_bench``, made anew for each run). Prints one
JSON line.

Run (in a venv with ``dbos``):
``python benches/compare/workload_dbos.py --storage sqlite --workflows 200``
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import _harness
import psycopg  # a dependency of dbos itself
from dbos import DBOS, DBOSConfig

DATABASE = "dbos_bench"


@DBOS.step()
async def no_op() -> None:
    return None


@DBOS.workflow()
async def three_no_ops() -> None:
    for _ in range(3):
        await no_op()


def _database_url(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _recreate_database(dsn: str) -> str:
    """Drops and creates `dbos_bench` through the server's maintenance database, so every run
    starts from empty tables, as the other engines do; returns its URL."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{DATABASE}"')
    return _database_url(dsn, DATABASE)


def _config(options: _harness.Options, folder: Path) -> DBOSConfig:
    if options.storage == "sqlite":
        url = f"sqlite:///{folder / 'dbos.sqlite'}"
    else:
        url = _recreate_database(options.postgres_dsn)
    return {"name": "mainspring-compare", "system_database_url": url}


async def _start(workflow_id: str) -> Any:
    # DBOS names workflows itself (a UUID) unless told otherwise: its default is kept.
    return await DBOS.start_workflow_async(three_no_ops)


async def _result(handle: Any) -> Any:
    return await handle.get_result()


async def _run(options: _harness.Options, folder: Path) -> _harness.Measured:
    DBOS(config=_config(options, folder))
    server = None
    if options.storage == "postgres":
        server = _harness.ServerCpu(_harness.postgres_server_pid(options.postgres_dsn))
    DBOS.launch()
    try:
        return await _harness.measure(_start, _result, options, server)
    finally:
        DBOS.destroy()


def main() -> None:
    options = _harness.parse_options(["sqlite", "postgres"])
    with tempfile.TemporaryDirectory(prefix="dbos-compare-") as folder:
        measured = asyncio.run(_run(options, Path(folder)))
    server = "PostgreSQL cluster" if options.storage == "postgres" else None
    version = _harness.package_version("dbos")
    _harness.emit(_harness.figures("dbos", version, options, measured, server))


if __name__ == "__main__":
    main()
