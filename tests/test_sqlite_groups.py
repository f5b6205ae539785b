"""The native SQLite store's group commit: operations of one pass share a transaction on the
store's thread, a failing one is undone alone, waves are split, a locked file is a clear error
that loses nothing, and a storage outlives the event loop it was first used on."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mainspring.errors import StorageError, WorkflowAlreadyStartedError
from mainspring.storage import SqliteStorage
from mainspring.storage import _sqlite_requests as requests
from mainspring.storage._sqlite_batch import GROUP_LIMIT

from .conformance import list_runs


async def _start(storage: SqliteStorage, workflow_id: str) -> None:
    await storage.start_workflow(workflow_id, f"{workflow_id}-run", "anything", "q", b"null")


async def test_a_failing_operation_in_a_group_is_undone_alone(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "groups.db")
    # One pass: one group. The duplicate fails; the starts around it stand.
    outcomes = await asyncio.gather(
        _start(storage, "a"),
        storage.start_workflow("a", "a-again", "anything", "q", b"null"),
        _start(storage, "b"),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], WorkflowAlreadyStartedError)
    runs = await list_runs(storage)
    assert [(run.workflow_id, run.run_id, run.history_length) for run in runs] == [
        ("a", "a-run", 1),
        ("b", "b-run", 1),
    ]
    await storage.close()


async def test_a_wave_larger_than_a_group_is_split_and_all_of_it_commits(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "wave.db")
    count = 3 * GROUP_LIMIT + 5
    await asyncio.gather(*(_start(storage, f"w-{number}") for number in range(count)))
    # Sent as the wave came in (the store's thread commits while the rest is produced).
    assert storage._database._tickets >= 4
    runs = await list_runs(storage)
    assert sorted(run.workflow_id for run in runs) == sorted(f"w-{n}" for n in range(count))
    await storage.close()


async def test_a_file_locked_past_the_busy_timeout_is_a_clear_error_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    storage = SqliteStorage(path, busy_timeout=timedelta(milliseconds=100))
    await _start(storage, "before")
    # Another process holds the write lock (a second SQLite library may not open the file in
    # this process).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"connection = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "connection.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "connection.execute('ROLLBACK')\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StorageError, match="nothing was committed"):
            await _start(storage, "during")
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()
    await _start(storage, "during")  # the same call succeeds once the lock is gone
    runs = await list_runs(storage)
    assert [run.workflow_id for run in runs] == ["before", "during"]
    await storage.close()


def test_a_storage_outlives_the_event_loop_it_was_first_used_on(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "loops.db")

    async def leave_a_group_in_flight() -> None:
        storage._database.submit(
            requests.start_workflow(storage.now_ms(), "first", "run", "any", "q", b"1", None)
        )
        await asyncio.sleep(0)  # the pass ends: the group goes to the store's thread
        assert storage._database._in_flight  # and this loop ends before its results

    asyncio.run(leave_a_group_in_flight())

    async def use_again() -> list[str]:
        await _start(storage, "second")
        return [run.workflow_id for run in await list_runs(storage)]

    assert asyncio.run(use_again()) == ["first", "second"]
    asyncio.run(storage.close())


async def test_closing_waits_for_the_group_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "closing.db"
    storage = SqliteStorage(path)
    starts = [asyncio.ensure_future(_start(storage, f"c-{number}")) for number in range(50)]
    await asyncio.sleep(0)  # the starts submit; their group goes to the store's thread
    await asyncio.sleep(0)
    await storage.close()
    await asyncio.gather(*starts)  # every one was committed, none failed
    reopened = SqliteStorage(path)
    assert len(await list_runs(reopened)) == 50
    await reopened.close()


class _LoopWithoutReaders(asyncio.SelectorEventLoop):
    """As Windows' proactor loop: no add_reader."""

    def add_reader(self, *args: object) -> None:
        raise NotImplementedError


def test_a_loop_without_readers_receives_results_through_a_task(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "proactor.db")

    async def start_and_list() -> list[str]:
        await asyncio.gather(*(_start(storage, f"p-{number}") for number in range(10)))
        assert storage._database._receiver is not None
        listed = [run.workflow_id for run in await list_runs(storage)]
        await storage.close()
        return listed

    loop = _LoopWithoutReaders()
    try:
        assert sorted(loop.run_until_complete(start_and_list())) == [f"p-{n}" for n in range(10)]
    finally:
        loop.close()


def test_a_forked_child_is_told_to_open_its_own_storage(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "fork.db")
    asyncio.run(_start(storage, "parent"))
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: 3.12+
        child = os.fork()
    if child == 0:
        try:
            asyncio.run(_start(storage, "child"))
            os.write(write, b"no error")
        except StorageError as error:
            os.write(write, str(error).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    reported = os.read(read, 4096).decode()
    os.close(read)
    assert "does not survive fork()" in reported
    asyncio.run(_start(storage, "after"))  # the parent's storage is untouched
    runs = asyncio.run(list_runs(storage))
    assert [run.workflow_id for run in runs] == ["parent", "after"]
    asyncio.run(storage.close())


def test_a_forked_child_gets_an_error_for_signals_too_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "fork-signal.db")
    asyncio.run(_start(storage, "parent"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:
        status = 1
        try:
            asyncio.run(storage.signal_workflow("parent", "anything", b"null"))
        except StorageError:
            status = 0
        asyncio.run(storage.close())  # lets go of the parent's connection, joins nothing
        os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    runs = asyncio.run(list_runs(storage))  # the parent's file and storage still work
    assert [(run.workflow_id, run.history_length) for run in runs] == [("parent", 1)]
    asyncio.run(storage.close())


# Operations for the property below: starts (single, or a wave larger than a group), signals
# and terminations, on a few workflow ids.
_ids = st.sampled_from(["a", "b", "c"])
_operations = st.one_of(
    st.tuples(st.just("start"), _ids),
    st.tuples(st.just("signal"), _ids),
    st.tuples(st.just("terminate"), _ids),
    st.tuples(st.just("wave"), st.just("")),
)


@given(st.lists(st.lists(_operations, min_size=1, max_size=6), min_size=1, max_size=8))
def test_operations_take_effect_in_the_order_they_were_submitted(
    passes: list[list[tuple[str, str]]],
) -> None:
    """However operations fall into groups (one pass, a wave sent early, a pass waiting for
    the group in flight), the store applies them in submission order: each outcome is what a
    sequential model predicts."""
    with tempfile.TemporaryDirectory() as folder:
        storage = SqliteStorage(Path(folder) / "order.db")
        outcomes = asyncio.run(_submit_in_passes(storage, passes))
        asyncio.run(storage.close())
    expected: list[str] = []
    status: dict[str, str] = {}  # workflow id -> "running" | "closed"
    for pass_operations in passes:
        for kind, workflow_id in pass_operations:
            if kind == "wave":
                expected += ["ok"] * (GROUP_LIMIT + 1)
                continue
            state = status.get(workflow_id)
            if kind == "start":
                expected.append("WorkflowAlreadyStartedError" if state == "running" else "ok")
                if state != "running":
                    status[workflow_id] = "running"
            elif state is None:
                expected.append("WorkflowNotFoundError")
            elif state == "closed":
                expected.append("WorkflowNotRunningError")
            else:
                expected.append("ok")
                if kind == "terminate":
                    status[workflow_id] = "closed"
    assert outcomes == expected


async def _submit_in_passes(
    storage: SqliteStorage, passes: list[list[tuple[str, str]]]
) -> list[str]:
    waves = itertools.count()
    runs = itertools.count()
    submitted: list[asyncio.Future[object]] = []
    for pass_operations in passes:
        for kind, workflow_id in pass_operations:
            if kind == "start":
                run = f"{workflow_id}-{next(runs)}"
                call = storage.start_workflow(workflow_id, run, "any", "q", b"null")
                submitted.append(asyncio.ensure_future(call))
            elif kind == "signal":
                call = storage.signal_workflow(workflow_id, "poke", b"null")
                submitted.append(asyncio.ensure_future(call))
            elif kind == "terminate":
                submitted.append(asyncio.ensure_future(storage.terminate_workflow(workflow_id, "")))
            else:
                wave = next(waves)
                submitted += [
                    asyncio.ensure_future(_start(storage, f"wave-{wave}-{number}"))
                    for number in range(GROUP_LIMIT + 1)
                ]
            await asyncio.sleep(0)  # each call submits its operation now, in this order
        await asyncio.sleep(0)  # a pass ends: its group may go while the next is submitted
    results = await asyncio.gather(*submitted, return_exceptions=True)
    return [type(result).__name__ if isinstance(result, Exception) else "ok" for result in results]
