"""Crash recovery: a worker process running 500 workflows (activities, timers and signals
mixed) is SIGKILLed at random moments and restarted; every workflow still finishes once, with
the result it would have had, and every history validates and replays."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from mainspring import Client, History, Replayer
from mainspring.storage import SqliteStorage

from .recovery_app import TASK_QUEUE, Bump, expected, mixed

WORKFLOWS = 500
KILLS = 6
ROOT = Path(__file__).resolve().parent.parent


def _start_worker(database: Path, attempt_log: Path) -> subprocess.Popen[bytes]:
    environment = dict(os.environ, RECOVERY_ATTEMPT_LOG=str(attempt_log))
    with open(database.with_suffix(".worker.log"), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.recovery_app", str(database)],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=log,
        )


async def _events_recorded(storage: SqliteStorage) -> int:
    # Through the storage's own connection: a second SQLite library (Python's sqlite3) must
    # not open a file this process holds open (see ARCHITECTURE.md, "One SQLite per process").
    ((count,),) = storage._database.execute("SELECT COUNT(*) FROM events")
    return int(count)


async def _completed(client: Client) -> int:
    return len([run async for run in client.list_workflows(status="COMPLETED")])


async def test_sigkilled_workers_lose_nothing_and_finish_everything_once(tmp_path: Path) -> None:
    database = tmp_path / "recovery.db"
    attempt_log = tmp_path / "attempts.log"
    storage = SqliteStorage(database, poll_interval=timedelta(milliseconds=20))
    client = Client(storage)
    handles = [
        await client.start_workflow(mixed, number, id=f"mixed-{number}", task_queue=TASK_QUEUE)
        for number in range(WORKFLOWS)
    ]
    chooser = random.Random(20261128)
    signalled = 0

    async def send_some_signals(count: int) -> None:
        # Signals go out whether or not a worker is running (some while none is).
        nonlocal signalled
        while count and signalled < WORKFLOWS:
            if signalled % 3 == 0:
                await handles[signalled].signal(Bump(amount=signalled))
            signalled += 1
            count -= 1

    progress = [await _events_recorded(storage)]
    for _ in range(KILLS):
        worker = _start_worker(database, attempt_log)
        await send_some_signals(20)
        # A random moment, after a random amount of real work: the worker lives in another
        # process, so watch the file it writes.
        target = await _events_recorded(storage) + chooser.randint(100, 1200)
        for _ in range(1_000):
            if await _events_recorded(storage) >= target or worker.poll() is not None:
                break
            await asyncio.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert worker.returncode == -signal.SIGKILL
        await send_some_signals(10)
        progress.append(await _events_recorded(storage))
    assert all(later > earlier for earlier, later in itertools.pairwise(progress)), (
        f"a killed worker recorded nothing: {progress}"
    )
    assert await _completed(client) < WORKFLOWS, "the kills should land before the work is done"

    await send_some_signals(WORKFLOWS)
    worker = _start_worker(database, attempt_log)
    try:
        results = [await handle.result(timeout=120) for handle in handles]
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    worker_log = database.with_suffix(".worker.log").read_text()[-2000:]
    assert results == [expected(number) for number in range(WORKFLOWS)], worker_log

    replayer = Replayer(workflows=[mixed])
    for handle in handles:
        history = await handle.history()  # validates: dense ids, references, nothing after end
        kinds = [kind for _, _, kind in history.outline()]
        assert kinds.count("WorkflowCompleted") == 1
        assert kinds[-1] == "WorkflowCompleted"
        replayer.replay(History.from_json(history.to_json()))
    runs = [run async for run in client.list_workflows()]
    assert len(runs) == WORKFLOWS, "no workflow was started twice"
    # Activities ran at least once each: three per workflow (an activity id is its workflow's
    # command sequence number, as in Temporal: unique within its run).
    executions = {tuple(line.split()[:2]) for line in attempt_log.read_text().splitlines()}
    assert len(executions) == 3 * WORKFLOWS
    await client.close()
