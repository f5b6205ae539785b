"""End to end in one process: 1,000 workflows x 3 no-op activities, and the latency of one
such workflow from start to result, on MemoryStorage and on SqliteStorage (synchronous=FULL),
with the worker at ``WorkerConfig()`` defaults. The workflows are started as a backlog before
the worker runs, or live while it runs: concurrently (``asyncio.gather``, as a service handling
many requests does) or one ``await start_workflow`` after another in a ``for`` loop (as a
script does). One row, labelled ``tuned-1000-slots``, runs the service shape with 1,000
activity slots beside the defaults.

Run: ``pytest benches/bench_end_to_end.py --benchmark-only``
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mainspring
from mainspring import Client, Worker, WorkerConfig, WorkflowHandle
from mainspring.storage import MemoryStorage, SqliteStorage, Storage

from .conftest import no_op, three_no_ops

WORKFLOWS = 1_000


def _memory(folder: Path) -> Storage:
    return MemoryStorage()


def _sqlite(folder: Path) -> Storage:
    return SqliteStorage(folder / f"bench-{time.monotonic_ns()}.db")  # synchronous=FULL


async def _throughput(
    count: int,
    make_storage: Callable[[Path], Storage],
    folder: Path,
    shape: str = "service",
    config: WorkerConfig | None = None,
) -> float:
    """Runs `count` workflows on one worker; returns workflows/s from the first start to the
    last result. ``backlog``: all are started (concurrently) before the worker runs, which
    then drains them. ``service``: the worker runs first and the workflows are started and
    awaited concurrently. ``script``: the worker runs first and a for loop awaits each start
    in turn, then the results."""
    client = Client(make_storage(folder))
    worker = Worker(
        client, task_queue="bench", workflows=[three_no_ops], activities=[no_op], config=config
    )

    async def start_all() -> list[WorkflowHandle[Any]]:
        if shape == "script":
            return [
                await client.start_workflow(three_no_ops, id=f"w-{index}", task_queue="bench")
                for index in range(count)
            ]
        handles: list[WorkflowHandle[Any]] = await asyncio.gather(
            *(
                client.start_workflow(three_no_ops, id=f"w-{index}", task_queue="bench")
                for index in range(count)
            )
        )
        return handles

    started = time.perf_counter()
    if shape == "backlog":
        handles = await start_all()
        async with worker:
            await asyncio.gather(*(handle.result() for handle in handles))
    else:
        async with worker:
            await asyncio.gather(*(handle.result() for handle in await start_all()))
    rate = count / (time.perf_counter() - started)
    await client.close()
    return rate


async def _latencies(
    samples: int, make_storage: Callable[[Path], Storage], folder: Path
) -> list[float]:
    client = Client(make_storage(folder))
    worker = Worker(client, task_queue="bench", workflows=[three_no_ops], activities=[no_op])
    latencies = []
    async with worker:
        for index in range(samples):
            started = time.perf_counter()
            handle = await client.start_workflow(three_no_ops, id=f"l-{index}", task_queue="bench")
            await handle.result()
            latencies.append(time.perf_counter() - started)
    await client.close()
    return latencies


@pytest.mark.parametrize("backend", [_memory, _sqlite], ids=["memory", "sqlite"])
def test_single_workflow_latency(
    benchmark: Any, backend: Callable[[Path], Storage], tmp_path: Path
) -> None:
    # First in the file: after the throughput runs the disk is still writing their files
    # back, which doubles a lone commit's fsync for a while.
    latencies: list[float] = []
    samples = 200 if backend is _memory else 100

    def run() -> None:
        latencies.extend(mainspring.run(_latencies(samples, backend, tmp_path)))

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    ordered = sorted(latencies)
    benchmark.extra_info["p50_ms"] = ordered[len(ordered) // 2] * 1000
    benchmark.extra_info["p99_ms"] = ordered[int(len(ordered) * 0.99)] * 1000


@pytest.mark.parametrize(
    ("shape", "config"),
    [
        ("backlog", None),
        ("service", None),
        ("script", None),
        ("service", WorkerConfig(max_concurrent_activities=1_000)),
    ],
    ids=["backlog", "service", "script", "service-tuned-1000-slots"],
)
@pytest.mark.parametrize("backend", [_memory, _sqlite], ids=["memory", "sqlite"])
def test_throughput_1000_workflows_of_3_activities(
    benchmark: Any,
    backend: Callable[[Path], Storage],
    shape: str,
    config: WorkerConfig | None,
    tmp_path: Path,
) -> None:
    rates: list[float] = []

    def run() -> None:
        rates.append(mainspring.run(_throughput(WORKFLOWS, backend, tmp_path, shape, config)))

    benchmark.pedantic(run, rounds=5 if backend is _memory else 3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["workflows_per_second"] = statistics.median(rates)
