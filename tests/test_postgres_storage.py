"""What only PostgreSQL has: its schema's migrations (many stores opening at once, a newer
schema refused, migrating on start off), partial indexes on the hot statements, wake-ups by
LISTEN/NOTIFY between processes (each store object here has its own pool and listener, as a
process does), and a connection dropped under a running worker. The storage contract itself
runs on PostgreSQL in the conformance and end-to-end suites."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mainspring import ActivityContext, Client, Worker, WorkerConfig, WorkflowContext, _core
from mainspring import activity as activity_decorator
from mainspring import workflow as workflow_decorator
from mainspring.errors import CommitUnknownError, StorageError

from .postgres_server import POSTGRES_DSN, drop_schema, new_schema, require_postgres

pytestmark = pytest.mark.usefixtures("postgres")


@pytest.fixture
def postgres() -> None:
    require_postgres()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = new_schema()
    yield name
    await drop_schema(name)


async def _admin() -> Any:
    import asyncpg

    return await asyncpg.connect(POSTGRES_DSN)


def _store(schema: str, **options: Any) -> Any:
    from mainspring.storage.postgres import PostgresStorage

    return PostgresStorage(POSTGRES_DSN, schema=schema, **options)


@activity_decorator(name="pg_double")
async def double(ctx: ActivityContext, value: int) -> int:
    return value * 2


@workflow_decorator(name="pg_doubles")
async def doubles(ctx: WorkflowContext, value: int) -> int:
    for _ in range(3):
        value = await ctx.execute_activity(
            double, value, start_to_close_timeout=timedelta(seconds=30)
        )
    return value


# The pool.


async def test_the_pool_is_sized_from_the_workers_running_on_the_store(schema: str) -> None:
    from mainspring.storage.postgres import DEFAULT_POOL_SIZE

    store = await _store(schema).connect()
    client = Client(store)
    config = WorkerConfig(max_concurrent_workflow_tasks=10)
    try:
        first_pool = store.tables._pool
        assert store.pool_size == first_pool.get_max_size() == DEFAULT_POOL_SIZE
        # A worker made is not a worker running; one at its defaults fits the default pool.
        Worker(client, task_queue="q", workflows=[doubles], activities=[double], config=config)
        async with Worker(client, task_queue="q", workflows=[doubles], activities=[double]):
            assert store.pool_size == DEFAULT_POOL_SIZE
        # Ten more pollers: the open pool is replaced by a larger one at its next use.
        for _ in range(2):  # one after the other: the pool fits one of them
            async with Worker(
                client, task_queue="q", workflows=[doubles], activities=[double], config=config
            ):
                assert store.pool_size == 3 + (10 + 1) + 2
                handle = await client.start_workflow(doubles, 1, id="sized", task_queue="q")
                assert await handle.result() == 8
            assert store.tables._pool.get_max_size() == store.pool_size
        assert first_pool.is_closing()
    finally:
        await client.close()
    fixed = _store(schema, pool_size=4)
    fixed_client = Client(fixed)
    try:
        async with Worker(fixed_client, task_queue="q", workflows=[doubles], config=config):
            assert fixed.pool_size == 4  # as told
    finally:
        await fixed_client.close()


async def test_behind_pgbouncer_it_polls_without_listen_or_a_statement_cache(
    schema: str,
) -> None:
    from urllib.parse import quote

    client = Client(f"{POSTGRES_DSN}?schema={quote(schema)}&pgbouncer=true")
    store: Any = client.storage
    try:
        async with Worker(client, task_queue="q", workflows=[doubles], activities=[double]):
            handle = await client.start_workflow(doubles, 1, id="bounced", task_queue="q")
            assert await handle.result() == 8
        assert store.tables.listener is None
        assert store._poll_seconds == 0.1  # pollers look every 100 ms instead
        admin = await _admin()
        try:
            listening = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                " AND query LIKE 'LISTEN%'",
                f"mainspring:{schema}",
            )
        finally:
            await admin.close()
        assert listening == 0
        async with store.tables._connection("inspect") as connection:
            assert connection._stmt_cache.get_max_size() == 0
    finally:
        await client.close()


async def test_a_write_cut_off_by_a_partition_is_ended_before_it_is_read_back(
    schema: str,
) -> None:
    # The connection drops while its write waits on a lock; the server's process goes on
    # waiting (a partition sends no reset it would notice). Read back then, the run looks
    # untouched, but the write would commit once the lock is released: so the store ends
    # that process first, and "not committed" stays true.
    from urllib.parse import urlsplit

    from .tcp_proxy import DelayingProxy

    target = urlsplit(POSTGRES_DSN)
    assert target.hostname is not None and target.port is not None
    proxy = await DelayingProxy(target.hostname, target.port, delay=0).start()
    store = _store(schema)
    store.tables.dsn = POSTGRES_DSN.replace(f":{target.port}/", f":{proxy.port}/")
    admin = await _admin()

    async def kinds() -> list[str]:
        history = await store.read_history("w", "r", 1)
        return [kind for _, _, kind in _core.history_outline(history)]

    try:
        await store.start_workflow("w", "r", "wf", "q", b"null")
        lock = admin.transaction()
        await lock.start()
        await admin.execute(f'SELECT 1 FROM "{schema}".runs WHERE workflow_id = $1 FOR UPDATE', "w")
        signal = asyncio.ensure_future(store.signal_workflow("w", "go", b"null"))
        while not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            " AND wait_event_type = 'Lock'",
            f"mainspring:{schema}",
        ):
            await asyncio.sleep(0.01)
        assert proxy.cut() >= 1
        with pytest.raises(StorageError) as raised:
            await signal
        assert raised.value.committed is False, raised.value
        await lock.rollback()  # the lock goes: a write still waiting would commit now
        assert "WorkflowSignaled" not in await kinds()
        # The next signal goes in as usual.
        await store.signal_workflow("w", "go", b"null")
        assert (await kinds()).count("WorkflowSignaled") == 1
    finally:
        await admin.close()
        await store.close()
        await proxy.close()


# Migrations.


async def test_ten_stores_opening_a_new_schema_at_once_migrate_it_once(schema: str) -> None:
    from mainspring.storage.postgres import SCHEMA_VERSION

    stores = [_store(schema) for _ in range(10)]
    try:
        await asyncio.gather(*(store.connect() for store in stores))
        admin = await _admin()
        try:
            versions = await admin.fetch(f'SELECT version FROM "{schema}".schema_version')
        finally:
            await admin.close()
        assert [row[0] for row in versions] == [SCHEMA_VERSION]
        # And every one of them works on the tables the first one made.
        client = Client(stores[3])
        await client.start_workflow(doubles, 1, id="after-migration", task_queue="pg")
        assert (await stores[7].describe_workflow("after-migration")).status == "RUNNING"
    finally:
        for store in stores:
            await store.close()


async def test_a_schema_migrated_by_a_newer_mainspring_is_refused(schema: str) -> None:
    await _store(schema).migrate()
    admin = await _admin()
    try:
        await admin.execute(f'UPDATE "{schema}".schema_version SET version = 99')
    finally:
        await admin.close()
    store = _store(schema)
    with pytest.raises(StorageError, match="newer Mainspring"):
        await store.connect()
    await store.close()


async def test_with_migrate_off_a_store_refuses_an_unmigrated_schema_until_db_migrate(
    schema: str,
) -> None:
    url = f"{POSTGRES_DSN}?schema={schema}&migrate=false"
    client = Client(url)
    with pytest.raises(StorageError, match="mainspring db migrate"):
        await client.storage.describe_workflow("anything")
    await client.close()
    migrated = subprocess.run(
        [sys.executable, "-m", "mainspring", "--db", url, "db", "migrate"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    assert "migrated from version 0" in migrated.stdout
    client = Client(url)  # migrate=false still: it finds the schema current now
    try:
        handle = await client.start_workflow(doubles, 1, id="after-db-migrate", task_queue="pg")
        assert (await handle.describe()).status == "RUNNING"
    finally:
        await client.close()


# Indexes: closed runs cost the hot statements nothing.


async def test_the_hot_statements_find_their_rows_by_index_among_many_closed_runs(
    schema: str,
) -> None:
    store = _store(schema)
    await store.connect()
    name = f'"{schema}"'
    admin = await _admin()
    try:
        await admin.execute(
            f"""INSERT INTO {name}.runs (version, workflow_id, run_id, workflow_type, task_queue,
                status, history_length, task_state, task_failures, cancel_requested, tail_start,
                started_ms, closed_ms, dropped_signals)
            SELECT 1, 'w' || n, 'r' || n, 'type', 'q', 'COMPLETED', 3, 0, 0, false, 4, n, n, 0
            FROM generate_series(1, 20000) AS n"""
        )
        await admin.execute(
            f"""INSERT INTO {name}.events (run_key, event_id, kind, row)
            SELECT r.run_key, e, 'Event', '\\x00' FROM {name}.runs r, generate_series(1, 3) e"""
        )
        await admin.execute(f"ANALYZE {name}.runs; ANALYZE {name}.events")
        statements = store.tables
        group = store.tables._group_statement(
            frozenset({"changed", "events", "activity_inserts", "activity_deletes", "drops"})
        )
        arrays = {
            "changed": 3 + 18 + 1, "events": 4, "activity_inserts": 22, "activity_deletes": 3,
            "drops": 1,
        }  # fmt: skip
        empty = [[] for _ in range(sum(arrays.values()))]
        hot = {
            "RUN_BY_KEY": (5,),
            "CURRENT_RUN": ("w5",),
            "RUNS_BY_ID": (["r5", "r6"],),
            "READ_RUNS": ([5, 6],),
            "READ_ACTIVITIES": ([5, 6], [3, 3]),
            "EVENTS_BY_ID": ([5, 6], [3, 3]),
            "EVENT_ROWS": (5, 1, 3),
            "ACTIVITY": (5, 3),
            "TIMER": (5, 3),
            "CLAIM_WORKFLOW_TASKS": ("q", 10**13, 128),
            "CLAIM_ACTIVITY_TASKS": ("q", 10**13, 128),
            "DUE": (10**13, 1000),
            "NEXT_WAKEUP": (10**13, "q"),
            "LIST_RUNS_BY_STATUS": (100, 50, "RUNNING", None),
            "TAKE_QUERY": ("q",),
        }
        plans = {name: (statements.statement(name), args) for name, args in hot.items()}
        # A group's write, as a worker's commits make it (EXPLAIN does not run it).
        plans["GROUP_WRITE"] = (group, (*empty, "channel", []))
        scans = {}
        for statement, (text, arguments) in plans.items():
            plan = await admin.fetch("EXPLAIN " + text, *arguments)
            lines = "\n".join(row[0] for row in plan)
            # Runs and events are what grow with closed runs; activities, timers and queries
            # hold open work only (deleted when it is done).
            if "Seq Scan on runs" in lines or "Seq Scan on events" in lines:
                scans[statement] = lines
        assert not scans, scans
    finally:
        await admin.close()
        await store.close()


# Wake-ups between processes.


async def test_a_worker_and_a_client_in_other_processes_are_woken_by_notification(
    schema: str,
) -> None:
    # Both look only once a minute: a result that comes in seconds came by NOTIFY.
    minute = timedelta(seconds=60)
    worker_store = _store(schema, poll_interval=minute)
    client_store = _store(schema, poll_interval=minute)
    try:
        async with Worker(
            Client(worker_store),
            task_queue="pg",
            workflows=[doubles],
            activities=[double],
            config=WorkerConfig(poll_interval=minute),
        ):
            await worker_store.connect()
            client = Client(client_store)
            for index in range(3):
                handle = await client.start_workflow(
                    doubles, index, id=f"notified-{index}", task_queue="pg"
                )
                assert await asyncio.wait_for(handle.result(), 10) == index * 8
    finally:
        await client_store.close()
        await worker_store.close()


async def test_a_worker_in_another_os_process_and_this_client_wake_each_other_by_notification(
    schema: str,
) -> None:
    # The worker process and this client each look only once a minute: a start the worker
    # takes up, and a result this client returns, within seconds came by NOTIFY.
    minute = timedelta(seconds=60)
    url = f"{POSTGRES_DSN}?schema={schema}"
    store = await _store(schema, poll_interval=minute).connect()  # migrated first
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.notified_worker", url,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    client = Client(store)
    try:
        assert worker.stdout is not None
        assert (await asyncio.wait_for(worker.stdout.readline(), 30)).strip() == b"ready"
        for index in range(3):
            handle = await client.start_workflow(
                "notified_triples", index + 1, id=f"apart-{index}", task_queue="notified"
            )
            assert await asyncio.wait_for(handle.result(), 10) == (index + 1) * 9
    finally:
        worker.kill()
        await worker.wait()
        await client.close()


async def test_the_listener_listens_again_after_its_connection_is_killed(schema: str) -> None:
    minute = timedelta(seconds=60)
    worker_store = _store(schema, poll_interval=minute)
    client_store = _store(schema, poll_interval=minute)
    try:
        await worker_store.connect()
        await client_store.connect()
        listener = client_store.tables.listener
        assert listener is not None and listener.listening
        reconnected = client_store.wait_for_change()
        admin = await _admin()
        try:
            pid = listener._connection.get_server_pid()
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        # Reconnecting wakes every waiter once (what was sent meanwhile is lost).
        await asyncio.wait_for(reconnected, 10)
        assert listener.reconnects == 1 and listener.listening
        async with Worker(
            Client(worker_store),
            task_queue="pg",
            workflows=[doubles],
            activities=[double],
            config=WorkerConfig(poll_interval=minute),
        ):
            handle = await Client(client_store).start_workflow(
                doubles, 5, id="after-reconnect", task_queue="pg"
            )
            assert await asyncio.wait_for(handle.result(), 10) == 40
    finally:
        await client_store.close()
        await worker_store.close()


# Connections dropped under a running worker.


async def _kill_pool_connections(schema: str, spare_pid: int | None) -> int:
    admin = await _admin()
    try:
        killed = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> coalesce($2, 0)",
            f"mainspring:{schema}",
            spare_pid,
        )
        return len(killed)
    finally:
        await admin.close()


async def test_an_operation_on_a_dropped_connection_is_a_storage_error_and_the_next_works(
    schema: str,
) -> None:
    store = _store(schema)
    client = Client(store)
    try:
        await client.start_workflow(doubles, 1, id="before", task_queue="pg")
        listener = store.tables.listener
        assert await _kill_pool_connections(schema, listener._connection.get_server_pid()) >= 1
        outcomes = []
        for index in range(3):
            try:
                await client.start_workflow(doubles, 1, id=f"after-{index}", task_queue="pg")
                outcomes.append("started")
            except StorageError as error:
                # Refused before anything was sent (the connection was dead when taken), or
                # unknown only if it was cut after the commit went out.
                unknown = isinstance(error, CommitUnknownError)
                assert error.committed is (None if unknown else False)
                outcomes.append("failed")
        # A connection the server dropped fails the operation on it, never a later one.
        assert outcomes[-1] == "started", outcomes
        description = await store.describe_workflow("after-2")
        assert description.status == "RUNNING"
    finally:
        await store.close()


async def test_workflows_finish_exactly_once_while_the_stores_connections_are_killed(
    schema: str,
) -> None:
    store = _store(schema, poll_interval=timedelta(milliseconds=100))
    client = Client(store)
    count = 100
    try:
        async with Worker(client, task_queue="pg", workflows=[doubles], activities=[double]):
            handles = [
                await client.start_workflow(doubles, index, id=f"storm-{index}", task_queue="pg")
                for index in range(count)
            ]
            results = asyncio.gather(*(_result(handle) for handle in handles))
            killed = 0
            for cut in range(10):
                # Cuts while the workflows run (a pace, not a wait for anything): each lands
                # on whatever is in flight then; the first at once, while all of them are.
                if cut:
                    await asyncio.wait([results], timeout=0.005)
                if results.done():
                    break
                listener = store.tables.listener
                spare = listener._connection.get_server_pid() if listener.listening else None
                killed += await _kill_pool_connections(schema, spare)
            assert await asyncio.wait_for(results, 60) == [index * 8 for index in range(count)]
        assert killed >= 1
        for handle in handles:
            kinds = [kind for _, _, kind in (await _history(handle)).outline()]
            assert kinds.count("WorkflowCompleted") == 1, kinds
            assert kinds.count("ActivityCompleted") == 3, kinds
    finally:
        await store.close()


async def _result(handle: Any) -> Any:
    return await _again_after_storage_errors(handle.result)


async def _history(handle: Any) -> Any:
    return await _again_after_storage_errors(handle.history)


async def _again_after_storage_errors(call: Any) -> Any:
    # The client's own call may be on a pooled connection the last cut killed: it fails with
    # StorageError (nothing lost) and is made again, as a caller would.
    while True:
        try:
            return await call()
        except StorageError:
            await asyncio.sleep(0.05)
