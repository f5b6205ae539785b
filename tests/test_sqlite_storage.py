"""SQLite specifics: the schema version guard, the default path, durability settings, and two
worker processes sharing one file."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mainspring import Client, Replayer, Worker, WorkflowContext, _core, activity, workflow
from mainspring.errors import StorageError, WorkflowAlreadyStartedError
from mainspring.storage import SqliteStorage

from .conformance import list_runs
from .recovery_app import TASK_QUEUE, Bump, expected, mixed
from .workflows import AddItem, double, sequential

ROOT = Path(__file__).resolve().parent.parent


async def test_a_file_from_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    await SqliteStorage(path).close()
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "UPDATE mainspring_meta SET value = ? WHERE key = 'schema_version'",
            (str(_core.SQLITE_SCHEMA_VERSION + 1),),
        )
    with pytest.raises(StorageError, match="newer Mainspring"):
        SqliteStorage(path)
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        (version,) = connection.execute(
            "SELECT value FROM mainspring_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert version == str(_core.SQLITE_SCHEMA_VERSION + 1)


def _format_1_started_row(*fields: str | bytes) -> bytes:
    """A WorkflowStarted row as schema versions 1 to 5 stored it (history format 1, postcard):
    event id 1 and time 0 as varints, variant 0, then each field length-prefixed."""
    row = bytearray([1, 0, 0])
    for field in fields:
        data = field.encode() if isinstance(field, str) else field
        row += bytes([len(data)]) + data
    return bytes(row)


async def test_a_file_from_the_first_schema_is_migrated_and_its_work_goes_on(
    tmp_path: Path,
) -> None:
    # A version-1 file holding a started workflow, written with version 1's own layout.
    path = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.executescript(_core.sqlite_migrations()[0])
        connection.execute("CREATE TABLE mainspring_meta (key TEXT PRIMARY KEY, value TEXT)")
        connection.execute("INSERT INTO mainspring_meta VALUES ('schema_version', '1')")
        connection.execute(
            "INSERT INTO runs (workflow_id, run_id, workflow_type, task_queue, status, "
            "history_length, started_ms, task_state, task_ready_ms) "
            "VALUES ('old', 'old-run', 'sequential', 'q', 'RUNNING', 1, 0, 1, 0)"
        )
        row = _format_1_started_row("sequential", "old", "old-run", "q", b"3")
        connection.execute("INSERT INTO events VALUES (1, 1, 'WorkflowStarted', ?)", (row,))
    client = Client(SqliteStorage(path))
    async with Worker(client, task_queue="q", workflows=[sequential], activities=[double]):
        assert await client.get_workflow_handle("old").result(timeout=30) == 6
        fresh = await client.start_workflow(sequential, 2, id="new", task_queue="q")
        assert await fresh.result(timeout=30) == 2
    await client.close()
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        (version,) = connection.execute(
            "SELECT value FROM mainspring_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert int(version) == _core.SQLITE_SCHEMA_VERSION


async def test_client_without_storage_uses_mainspring_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("MAINSPRING_DB", str(path))
    client = Client()
    assert isinstance(client.storage, SqliteStorage)
    await client.start_workflow("anything", id="w", task_queue="q")
    await client.close()
    assert path.exists()
    reopened = Client(SqliteStorage(path))
    assert [run.workflow_id async for run in reopened.list_workflows()] == ["w"]
    await reopened.close()


def _open_each_at_once(paths: list[str], barrier: Any, failures: Any) -> None:
    for path in paths:
        barrier.wait()
        try:
            SqliteStorage(path)._database.close()
        except Exception as error:
            failures.put(f"{path}: {error!r}")


def test_processes_opening_a_new_file_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    # Each fresh file is opened by three processes released together, so they race for the
    # switch to WAL mode and the first migration.
    context = multiprocessing.get_context("spawn")
    paths = [str(tmp_path / f"new-{number}.db") for number in range(15)]
    barrier = context.Barrier(3)
    failures = context.Queue()
    processes = [
        context.Process(target=_open_each_at_once, args=(paths, barrier, failures))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    reported = []
    while not failures.empty():
        reported.append(failures.get())
    assert reported == []


def _start_each_at_once(path: str, process: int, barrier: Any, outcomes: Any) -> None:
    """Starts workflows w-0..w-19 on `path`, each when every process is ready to start it."""

    async def start_all() -> list[str]:
        storage = SqliteStorage(path)
        results = []
        for number in range(20):
            await asyncio.to_thread(barrier.wait, 60)
            try:
                await storage.start_workflow(f"w-{number}", f"{process}-{number}", "t", "q", b"1")
                results.append("started")
            except WorkflowAlreadyStartedError:
                results.append("refused")
        await storage.close()
        return results

    outcomes.put(asyncio.run(start_all()))


def test_processes_starting_one_workflow_id_at_once_record_one_run(tmp_path: Path) -> None:
    # Four processes, four connections, one file: the database's unique index over open runs
    # lets exactly one start of each id through.
    path = tmp_path / "race.db"
    SqliteStorage(path)._database.close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    outcomes = context.Queue()
    processes = [
        context.Process(
            target=_start_each_at_once, args=(str(path), number, barrier, outcomes), daemon=True
        )
        for number in range(4)
    ]
    for process in processes:
        process.start()
    results = [outcomes.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0] * 4
    for number in range(20):
        assert sorted(result[number] for result in results) == ["refused"] * 3 + ["started"]

    async def runs() -> list[tuple[str, int]]:
        storage = SqliteStorage(path)
        listed = [(run.workflow_id, run.history_length) for run in await list_runs(storage)]
        await storage.close()
        return listed

    listed = asyncio.run(runs())
    assert sorted(workflow_id for workflow_id, _ in listed) == sorted(f"w-{n}" for n in range(20))
    assert {length for _, length in listed} == {1}


async def test_durability_settings(tmp_path: Path) -> None:
    for setting, expected_value in (("FULL", 2), ("NORMAL", 1)):
        storage = SqliteStorage(tmp_path / f"{setting}.db", synchronous=setting)
        read = storage._database.execute("PRAGMA synchronous")[0][0]
        mode = storage._database.execute("PRAGMA journal_mode")[0][0]
        assert (read, mode) == (expected_value, "wal")
        await storage.close()
    with pytest.raises(ValueError):
        SqliteStorage(tmp_path / "x.db", synchronous="OFF")


async def test_two_worker_processes_share_one_file_and_never_run_one_task_twice(
    tmp_path: Path,
) -> None:
    database = tmp_path / "shared.db"
    client = Client(SqliteStorage(database))
    count = 150
    handles = [
        await client.start_workflow(mixed, number, id=f"m{number}", task_queue=TASK_QUEUE)
        for number in range(count)
    ]
    for number in range(0, count, 3):
        await handles[number].signal(Bump(amount=number))
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.recovery_app", str(database)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        results = [await handle.result(timeout=120) for handle in handles]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
    assert results == [expected(number) for number in range(count)]
    replayer = Replayer(workflows=[mixed])
    for handle in handles:
        # A task run by both workers would have recorded its commands twice: replay would
        # find commands the code did not issue.
        replayer.replay(await handle.history())
    await client.close()


async def test_a_waiting_client_sees_a_close_committed_by_another_connection(
    tmp_path: Path,
) -> None:
    # Two storages on one file stand for two processes: the waiter learns of the close only
    # through the file (its watcher notices SQLite's data version moving), not in-process.
    waiting = SqliteStorage(tmp_path / "shared.db", poll_interval=timedelta(milliseconds=10))
    closing = SqliteStorage(tmp_path / "shared.db")
    await waiting.start_workflow("w", "r", "wf", "queue", b"null")
    waiter = asyncio.ensure_future(waiting.wait_closed("w", "r", timeout=30))
    while waiting._watcher is None:  # until the waiter has read the status: still running
        await asyncio.sleep(0)
    assert not waiter.done()
    await closing.terminate_workflow("w", "from elsewhere")
    assert _core.run_outcome(await waiter) == ("TERMINATED", "from elsewhere")
    await waiting.close()
    await closing.close()


async def test_an_eager_start_leases_the_first_task_in_its_own_commit(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "eager.db")
    task = await storage.start_workflow("w", "r", "wf", "queue", b"null", eager_lease_ms=10_000)
    assert task is not None and (task.workflow_id, task.history_length) == ("w", 1)
    assert task.tail_from == 1 and task.history_tail is not None
    outline = _core.history_outline(task.history_tail)
    assert [(event_id, kind) for event_id, _, kind in outline] == [(1, "WorkflowStarted")]
    # Leased, so no poll hands it out again; without eager_lease_ms the task is queued.
    assert await storage.poll_workflow_tasks("queue", 10_000, 10) == []
    assert await storage.start_workflow("v", "s", "wf", "queue", b"null") is None
    assert [polled.workflow_id for polled in await storage.poll_workflow_tasks("queue", 1, 9)] == [
        "v"
    ]
    await storage.close()


async def test_a_workflow_started_next_to_its_worker_begins_without_a_poll(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "local.db")
    polled: list[str] = []
    poll = storage.poll_workflow_tasks

    async def recording_poll(task_queue: str, lease_ms: int, max_tasks: int) -> Any:
        tasks = await poll(task_queue, lease_ms, max_tasks)
        polled.extend(task.workflow_id for task in tasks)
        return tasks

    storage.poll_workflow_tasks = recording_poll  # type: ignore[method-assign]
    fused_starts: list[str] = []
    fuse = storage.start_workflow_with_first_task

    async def recording_fuse(workflow_id: str, *arguments: Any, **options: Any) -> Any:
        fused_starts.append(workflow_id)
        return await fuse(workflow_id, *arguments, **options)

    storage.start_workflow_with_first_task = recording_fuse  # type: ignore[method-assign]
    client = Client(storage)
    async with Worker(client, task_queue="q", workflows=[sequential], activities=[double]):
        handle = await client.start_workflow(sequential, 3, id="local", task_queue="q")
        # The start committed with the first task's outcome: the activity is scheduled.
        kinds = [kind for _, _, kind in (await handle.history()).outline()]
        assert kinds[:3] == ["WorkflowStarted", "WorkflowTaskCompleted", "ActivityScheduled"]
        assert await handle.result(timeout=30) == 6
    # Its first task came with the start, the later ones with the activity results.
    assert fused_starts == ["local"]
    assert "local" not in polled
    # Without a running worker the task is queued and a poll hands it out.
    queued = await client.start_workflow(sequential, 2, id="queued", task_queue="q")
    async with Worker(client, task_queue="q", workflows=[sequential], activities=[double]):
        assert await queued.result(timeout=30) == 2
    assert "queued" in polled
    await client.close()


_gate: asyncio.Event | None = None


@activity
async def wait_for_gate(label: str) -> str:
    assert _gate is not None
    await _gate.wait()
    return label


@workflow
async def gated(ctx: WorkflowContext) -> list[str]:
    seen: list[str] = []
    ctx.set_signal_handler(AddItem, lambda signal: seen.append(signal.item))
    for label in ("first", "second"):
        seen.append(await ctx.execute_activity(wait_for_gate, label, start_to_close_timeout=60))
    return seen


async def test_activity_results_fuse_with_their_workflow_task_around_a_signal(
    tmp_path: Path,
) -> None:
    global _gate
    _gate = asyncio.Event()
    storage = SqliteStorage(tmp_path / "fused.db")
    fused: list[bool] = []
    fuse = storage.complete_activity_with_workflow_task

    async def recording_fuse(*arguments: Any, **options: Any) -> Any:
        committed = await fuse(*arguments, **options)
        fused.append(committed is not None)
        return committed

    storage.complete_activity_with_workflow_task = recording_fuse  # type: ignore[method-assign]
    client = Client(storage)
    async with Worker(client, task_queue="q", workflows=[gated], activities=[wait_for_gate]):
        handle = await client.start_workflow(gated, id="g", task_queue="q")
        # While the first activity waits at the gate, a signal comes in and is handled by a
        # workflow task of its own; the instance stays cached with it.
        while True:
            changed = storage.wait_for_change()
            kinds = [kind for _, _, kind in (await handle.history()).outline()]
            if kinds.count("WorkflowTaskCompleted") == 1 and "ActivityScheduled" in kinds:
                break
            await changed
        await handle.signal(AddItem(item="signal"))
        while True:
            changed = storage.wait_for_change()
            if (await handle.describe()).history_length >= 5:  # the signal's task committed
                break
            await changed
        _gate.set()
        assert await handle.result(timeout=30) == ["signal", "first", "second"]
    # Both results went in with the task they woke: the instance had seen every event.
    assert fused == [True, True]
    Replayer(workflows=[gated]).replay(await handle.history())
    await client.close()
