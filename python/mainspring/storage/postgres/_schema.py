"""The PostgreSQL store's tables, in a schema of their own, and their migrations.

The rows are the core's (`RunRecord.row()`, `ActivityRecord.row()`, event rows of history
format 2), so the columns follow the SQLite store's current schema. Migrations run in one
transaction under an advisory lock keyed by the schema's name, so ten workers starting at once
take turns and the first one migrates; the version is kept in ``schema_version``. A database
migrated by a newer Mainspring is refused, as is an old one when migrating on start is off.

The task indexes are partial: they hold queued and leased rows only, so closed and idle runs
cost a poll, a tick or a commit nothing however many there are.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import StorageError

#: A schema name Mainspring accepts: a plain lower-case identifier (it is also quoted).
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Each migration's statements, in order; the schema's version is how many have run.
MIGRATIONS: tuple[str, ...] = (
    # Version 1: the tables of history format 2 (what SQLite schema 7 holds), and the
    # function a group's write aborts through.
    """
CREATE TABLE {schema}.runs (
    run_key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version bigint NOT NULL,
    workflow_id text NOT NULL,
    run_id text NOT NULL UNIQUE,
    workflow_type text NOT NULL,
    task_queue text NOT NULL,
    status text NOT NULL,
    history_length bigint NOT NULL,
    -- The run's one workflow task: 0 idle, 1 queued (ready at task_ready_ms),
    -- 2 leased (to task_token until task_deadline_ms).
    task_state bigint NOT NULL,
    task_ready_ms bigint,
    task_token bigint,
    task_deadline_ms bigint,
    task_failures bigint NOT NULL,
    last_task_failure text,
    cancel_requested boolean NOT NULL,
    tail_start bigint NOT NULL,
    started_ms bigint NOT NULL,
    closed_ms bigint,
    dropped_signals bigint NOT NULL
);
CREATE INDEX runs_by_workflow ON {schema}.runs (workflow_id, run_key);
CREATE UNIQUE INDEX runs_open_workflow ON {schema}.runs (workflow_id) WHERE status = 'RUNNING';
CREATE INDEX runs_ready ON {schema}.runs (task_queue, task_ready_ms) WHERE task_state = 1;
CREATE INDEX runs_leases ON {schema}.runs (task_deadline_ms) WHERE task_state = 2;
CREATE INDEX runs_by_status ON {schema}.runs (status, run_key);
CREATE INDEX runs_by_type ON {schema}.runs (workflow_type, run_key);

CREATE TABLE {schema}.events (
    run_key bigint NOT NULL,
    event_id bigint NOT NULL,
    kind text NOT NULL,
    row bytea NOT NULL,
    PRIMARY KEY (run_key, event_id)
);

CREATE TABLE {schema}.activities (
    run_key bigint NOT NULL,
    scheduled_event_id bigint NOT NULL,
    version bigint NOT NULL,
    activity_id text NOT NULL,
    task_queue text NOT NULL,
    activity_type text NOT NULL,
    input bytea NOT NULL,
    policy bytea NOT NULL,
    schedule_to_close_ms bigint,
    schedule_to_start_ms bigint,
    start_to_close_ms bigint,
    heartbeat_ms bigint,
    attempt bigint NOT NULL,
    scheduled_ms bigint NOT NULL,
    -- 0 queued (may start at ready_ms), 1 running (under token, since started_ms).
    state bigint NOT NULL,
    ready_ms bigint,
    token bigint,
    started_ms bigint,
    last_heartbeat_ms bigint,
    heartbeat_details bytea NOT NULL,
    last_failure bytea,
    next_deadline_ms bigint,
    PRIMARY KEY (run_key, scheduled_event_id)
);
CREATE INDEX activities_ready ON {schema}.activities (task_queue, ready_ms) WHERE state = 0;
CREATE INDEX activities_next_deadline ON {schema}.activities (next_deadline_ms)
    WHERE next_deadline_ms IS NOT NULL;

CREATE TABLE {schema}.timers (
    run_key bigint NOT NULL,
    started_event_id bigint NOT NULL,
    fire_ms bigint NOT NULL,
    PRIMARY KEY (run_key, started_event_id)
);
CREATE INDEX timers_due ON {schema}.timers (fire_ms);

CREATE TABLE {schema}.queries (
    query_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_queue text NOT NULL,
    workflow_id text NOT NULL,
    run_id text NOT NULL,
    name text NOT NULL,
    input bytea NOT NULL,
    -- 0 waiting for a worker, 1 taken, 2 answered.
    state bigint NOT NULL DEFAULT 0,
    result bytea,
    error text,
    created_ms bigint NOT NULL
);
CREATE INDEX queries_waiting ON {schema}.queries (task_queue, query_id) WHERE state = 0;

-- Aborts a group's write when a fence fails midway (see storage/postgres/_group_write.py).
CREATE FUNCTION {schema}.conflict(message text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = message;
END
$$;
""",
    # Version 2: who holds a run's workflow task (its lease), for describe; written by the
    # process that takes the lease (`LEASE_HOLDER` in `_group_write.py`), not a rule.
    """
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS lease_identity text;
""",
)

#: The schema version this build writes and reads.
SCHEMA_VERSION = len(MIGRATIONS)


def quoted_schema(name: str) -> str:
    """The schema's name, checked and quoted for SQL."""
    if not _SCHEMA_NAME.match(name):
        raise ValueError(
            f"schema {name!r} is not a plain lower-case identifier (letters, digits, '_')"
        )
    return f'"{name}"'


async def stored_version(connection: Any, schema: str) -> int | None:
    """The schema's version, or None when it has no Mainspring tables yet."""
    exists = await connection.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{quoted_schema(schema)}.schema_version"
    )
    if not exists:
        return None
    version = await connection.fetchval(
        f"SELECT version FROM {quoted_schema(schema)}.schema_version"
    )
    return None if version is None else int(version)


async def migrate(connection: Any, schema: str) -> int:
    """Brings ``schema`` up to :data:`SCHEMA_VERSION` in one transaction under the schema's
    advisory lock; refuses a newer one. Returns the version it found."""
    name = quoted_schema(schema)
    async with connection.transaction():
        # Keyed by the schema's name: stores of other schemas in the database do not wait.
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"mainspring:{schema}"
        )
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {name}.schema_version (version bigint NOT NULL)"
        )
        found = await connection.fetchval(f"SELECT version FROM {name}.schema_version")
        version = 0 if found is None else int(found)
        refuse_newer(version, schema)
        for statements in MIGRATIONS[version:]:
            await connection.execute(statements.format(schema=name))
        if found is None:
            await connection.execute(
                f"INSERT INTO {name}.schema_version VALUES ($1)", SCHEMA_VERSION
            )
        else:
            await connection.execute(
                f"UPDATE {name}.schema_version SET version = $1", SCHEMA_VERSION
            )
        return version


def refuse_newer(version: int, schema: str) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"schema {schema!r} was migrated by a newer Mainspring (schema version {version}; "
            f"this one reads up to {SCHEMA_VERSION}): upgrade Mainspring to use it"
        )


def check_current(version: int | None, schema: str) -> None:
    """With migrating on start off: the schema must be this build's already."""
    if version is not None:
        refuse_newer(version, schema)
    if version != SCHEMA_VERSION:
        found = "no Mainspring tables" if version is None else f"schema version {version}"
        raise StorageError(
            f"schema {schema!r} has {found}, and this Mainspring needs version "
            f"{SCHEMA_VERSION}: run `mainspring db migrate` (or open the store with "
            "migrate=True)"
        )
