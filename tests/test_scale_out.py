"""Scale-out on PostgreSQL, with real processes: four worker processes run a storm of
workflows (activities that fail once and retry, timers, signals) while one worker at a time is
SIGKILLed every 2-4 s and started again; then the same with the PostgreSQL server restarted
mid-run (``-m fast`` and ``-m immediate``); then with the workers on "other machines", behind
a TCP proxy that adds 1 ms each way and once cuts every connection. Every workflow completes
exactly once with the right result, and every history replays.

At CI size (``STORM_WORKFLOWS``, 300 by default); ``-m big`` runs 2,000.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mainspring import Client, History, Replayer
from mainspring.errors import StorageError

from .postgres_server import POSTGRES_DSN, drop_schema, new_schema, require_postgres
from .recovery_app import TASK_QUEUE, Bump, expected, mixed
from .tcp_proxy import DelayingProxy

# A storm takes tens of seconds on 2 cores (the suite's 60 s per test is for unit tests).
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
STORM_WORKFLOWS = int(os.environ.get("STORM_WORKFLOWS", "300"))
# Each storm at CI size, and at full size behind the opt-in marker (`pytest -m big`).
SIZES = [STORM_WORKFLOWS, pytest.param(2_000, marks=pytest.mark.big, id="full-size-2000")]


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require_postgres()
    name = new_schema()
    yield name
    await drop_schema(name)


def _url(schema: str, port: int | None = None) -> str:
    parts = urlsplit(POSTGRES_DSN)
    if port is not None:
        parts = parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}")
    return parts._replace(query=f"schema={schema}").geturl()


class Workers:
    """Worker processes of the recovery app, on one storage URL."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.kills = 0

    def start(self) -> subprocess.Popen[bytes]:
        environment = dict(os.environ, RECOVERY_ATTEMPT_LOG=str(self.folder / "attempts.log"))
        with open(self.folder / "workers.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.recovery_app", self.url],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=log,
            )
        self.processes.append(process)
        return process

    def kill_one(self, chooser: random.Random) -> None:
        alive = [process for process in self.processes if process.poll() is None]
        victim = chooser.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        self.processes.remove(victim)
        self.kills += 1
        self.start()

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

    def log_tail(self) -> str:
        path = self.folder / "workers.log"
        return path.read_text()[-3000:] if path.exists() else ""


async def _patiently(call: Callable[[], Awaitable[Any]]) -> Any:
    """A client call made again while the server is away (it fails with StorageError, and
    nothing is lost)."""
    for _ in range(600):
        try:
            return await call()
        except StorageError:
            await asyncio.sleep(0.1)
    raise AssertionError("the storage stayed away for a minute")


async def _storm(
    client: Client,
    workers: Workers,
    workflows: int,
    disrupt: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    handles = [
        await client.start_workflow(mixed, number, id=f"storm-{number}", task_queue=TASK_QUEUE)
        for number in range(workflows)
    ]
    for _ in range(WORKERS):
        workers.start()
    chooser = random.Random(20261201)
    results = asyncio.gather(
        *(_patiently(lambda handle=handle: handle.result(timeout=300)) for handle in handles)
    )
    signalled = 0
    round_number = 0
    while not results.done():
        # The pace of the outage: a worker killed every 2-4 s (a real interval, not a wait
        # for anything), signals sent meanwhile, and the caller's disruption.
        await asyncio.wait([results], timeout=chooser.uniform(2, 4))
        if results.done():
            break
        for number in range(signalled, min(signalled + workflows // 4, workflows)):
            if number % 3 == 0:
                await _patiently(lambda number=number: handles[number].signal(Bump(amount=number)))
        signalled = min(signalled + workflows // 4, workflows)
        workers.kill_one(chooser)
        if disrupt is not None:
            await disrupt(round_number)
        round_number += 1
        if signalled >= workflows and round_number > 40:
            break
    for number in range(signalled, workflows):
        if number % 3 == 0:
            await _patiently(lambda number=number: handles[number].signal(Bump(amount=number)))
    try:
        outcome = await asyncio.wait_for(results, 300)
    finally:
        workers.stop()
    assert outcome == [expected(number) for number in range(workflows)], workers.log_tail()
    assert workers.kills >= 1
    replayer = Replayer(workflows=[mixed])
    for handle in handles:
        history = await handle.history()
        kinds = [kind for _, _, kind in history.outline()]
        assert kinds.count("WorkflowCompleted") == 1 and kinds[-1] == "WorkflowCompleted"
        replayer.replay(History.from_json(history.to_json()))
    runs = [run async for run in client.list_workflows()]
    assert len(runs) == workflows, "no workflow was started twice"
    # Every workflow's flaky activity failed once and was retried (a retried failure is not
    # in the history, as in Temporal: the attempts log shows it).
    attempts = (workers.folder / "attempts.log").read_text().split("\n")
    retried = {line.split()[0] for line in attempts if line and int(line.split()[2]) >= 2}
    assert retried == {f"storm-{number}" for number in range(workflows)}


def _client(schema: str) -> Client:
    from mainspring.storage.postgres import PostgresStorage

    return Client(PostgresStorage(POSTGRES_DSN, schema=schema))


@pytest.mark.parametrize("workflows", SIZES)
async def test_four_workers_killed_in_turn_finish_every_workflow_once(
    schema: str, tmp_path: Path, workflows: int
) -> None:
    client = _client(schema)
    try:
        await _storm(client, Workers(_url(schema), tmp_path), workflows)
    finally:
        await client.close()


def _restartable() -> None:
    # Only the cluster scripts/services.sh runs can be restarted by the test.
    if "MAINSPRING_TEST_POSTGRES" in os.environ:
        pytest.skip("the server is not the one scripts/services.sh runs")


@pytest.mark.parametrize("workflows", SIZES)
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_the_storm_survives_the_server_restarting(
    schema: str, tmp_path: Path, mode: str, workflows: int
) -> None:
    _restartable()
    client = _client(schema)

    async def restart(round_number: int) -> None:
        if round_number == 1:
            restarted = await asyncio.to_thread(
                subprocess.run,
                ["bash", str(ROOT / "scripts" / "services.sh"), "restart", mode],
                capture_output=True,
            )
            assert restarted.returncode == 0, restarted.stderr

    try:
        await _storm(client, Workers(_url(schema), tmp_path), workflows, restart)
    finally:
        await client.close()


@pytest.mark.parametrize("workflows", SIZES)
async def test_workers_behind_a_slow_network_that_is_cut_once_finish_every_workflow_once(
    schema: str, tmp_path: Path, workflows: int
) -> None:
    target = urlsplit(POSTGRES_DSN)
    proxy = await DelayingProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    client = _client(schema)

    async def cut(round_number: int) -> None:
        if round_number == 1:
            assert proxy.cut() >= 1

    try:
        await _storm(client, Workers(_url(schema, proxy.port), tmp_path), workflows, cut)
        assert proxy.cuts == 1
    finally:
        await client.close()
        await proxy.close()
