"""``mainspring db migrate``: brings the database `--db` / `$MAINSPRING_DB` names up to this
build's schema, for deployments whose workers open their store with migrating on start off
(``PostgresStorage(..., migrate=False)`` or ``?migrate=false`` in the URL) because their
runtime role may not change the schema (as ``dbos migrate`` does for DBOS)."""

from __future__ import annotations

import argparse
from typing import Any

from ..storage import Storage


def add_parser(commands: Any) -> None:
    database = commands.add_parser("db", help="manage the database's schema")
    sub = database.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="create or migrate the schema to this Mainspring's version")


async def run(storage: Storage, arguments: argparse.Namespace) -> int:
    assert arguments.db_command == "migrate"
    from ..storage.sqlite import SqliteStorage

    if isinstance(storage, SqliteStorage):
        # Opening a SQLite file migrates it (one transaction); a read opens it.
        await storage.list_workflows(page_size=1)
        print(f"{storage.path}: schema up to date")
        return 0
    from ..storage.postgres import SCHEMA_VERSION, PostgresStorage

    if not isinstance(storage, PostgresStorage):
        print("this store keeps no schema")
        return 0
    found = await storage.migrate()
    if found == SCHEMA_VERSION:
        print(f"schema {storage.schema!r}: at version {SCHEMA_VERSION} already")
    else:
        print(f"schema {storage.schema!r}: migrated from version {found} to {SCHEMA_VERSION}")
    return 0
