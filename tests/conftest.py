"""Shared fixtures: a storage with a virtual clock, a client, and a worker factory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from mainspring import Client, Worker, WorkerConfig
from mainspring.storage import MemoryStorage, SqliteStorage, Storage, VirtualClock
from mainspring.storage._adapter import AdaptedStorage

from .conformance import BACKENDS, SECOND_CLIENTS
from .dict_tables import dict_storage
from .postgres_server import postgres_storage

settings.register_profile(
    "fast", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "slow", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

TASK_QUEUE = "tests"


class Environment:
    """One test's engine: virtual clock, a storage backend, client, and workers on demand."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.clock = VirtualClock()
        self.storage: MemoryStorage | SqliteStorage | AdaptedStorage
        if backend == "memory":
            self.storage = MemoryStorage(clock=self.clock)
        elif backend == "sqlite":
            self.storage = SqliteStorage(folder / "test.db", clock=self.clock)
        elif backend == "postgres":
            self.storage = postgres_storage(self.clock)  # type: ignore[assignment]
        else:
            self.storage = dict_storage(self.clock)
        self.client = Client(self.storage)

    @contextlib.asynccontextmanager
    async def worker(
        self,
        workflows: Sequence[Callable[..., Any]] = (),
        activities: Sequence[Callable[..., Any]] = (),
        config: WorkerConfig | None = None,
        task_queue: str = TASK_QUEUE,
    ) -> AsyncIterator[Worker]:
        async with Worker(
            self.client,
            task_queue=task_queue,
            workflows=workflows,
            activities=activities,
            config=config,
        ) as worker:
            yield worker


@pytest.fixture(params=["memory", "sqlite", "python-adapter", "postgres"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Environment]:
    """Every end-to-end test runs on each backend (one a store written in Python over the
    core's rules, `dict_tables`; PostgreSQL on the test server, `postgres_server`)."""
    environment = Environment(request.param, tmp_path)
    yield environment
    await environment.storage.close()


# The storage conformance suites' fixtures (`conformance.py`): every backend on a virtual clock.


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture(params=sorted(BACKENDS))
async def storage(
    request: pytest.FixtureRequest, clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[Storage]:
    backend = BACKENDS[request.param](clock, tmp_path)
    yield backend
    await backend.close()


@pytest.fixture
async def second_client(
    request: pytest.FixtureRequest, storage: Storage, clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[Storage]:
    """Another client of the `storage` fixture's store (see `SECOND_CLIENTS`)."""
    backend_name = request.node.callspec.params["storage"]
    second = SECOND_CLIENTS[backend_name](storage, clock, tmp_path)
    yield second
    if second is not storage:
        await second.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``big`` tests (full-size storms, minutes each) run only when ``-m`` names them."""
    if "big" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="a full-size test: select it with -m big")
    for item in items:
        if "big" in item.keywords:
            item.add_marker(skip)
