"""End to end in one process: 1,000 workflows x 3 no-op activities (started and awaited
concurrently), and the latency of one such workflow from start to result, on MemoryStorage and
on SqliteStorage (synchronous=FULL).

Run: ``pytest benches/bench_end_to_end.py --benchmark-only``
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import mainspring
from mainspring import Client, Worker, WorkerConfig
from mainspring.storage import MemoryStorage, SqliteStorage

from .conftest import no_op, three_no_ops

WORKFLOWS = 1_000


async def _throughput(count: int) -> float:
    """Starts `count` workflows, runs one worker until all are done; returns workflows/s."""
    client = Client(MemoryStorage())
    config = WorkerConfig(max_concurrent_activities=1_000)
    worker = Worker(
        client, task_queue="bench", workflows=[three_no_ops], activities=[no_op], config=config
    )
    started = time.perf_counter()
    # Started and awaited concurrently, as a service handling many requests would.
    handles = await asyncio.gather(
        *(
            client.start_workflow(three_no_ops, id=f"w-{index}", task_queue="bench")
            for index in range(count)
        )
    )
    async with worker:
        await asyncio.gather(*(handle.result() for handle in handles))
    return count / (time.perf_counter() - started)


def test_throughput_1000_workflows_of_3_activities(benchmark: Any) -> None:
    rates: list[float] = []

    def run() -> None:
        rates.append(mainspring.run(_throughput(WORKFLOWS)))

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["workflows_per_second"] = statistics.median(rates)


async def _latencies(samples: int) -> list[float]:
    client = Client(MemoryStorage())
    worker = Worker(client, task_queue="bench", workflows=[three_no_ops], activities=[no_op])
    latencies = []
    async with worker:
        for index in range(samples):
            started = time.perf_counter()
            handle = await client.start_workflow(three_no_ops, id=f"l-{index}", task_queue="bench")
            await handle.result()
            latencies.append(time.perf_counter() - started)
    return latencies


def test_single_workflow_latency(benchmark: Any) -> None:
    latencies: list[float] = []

    def run() -> None:
        latencies.extend(mainspring.run(_latencies(200)))

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    ordered = sorted(latencies)
    benchmark.extra_info["p50_ms"] = ordered[len(ordered) // 2] * 1000
    benchmark.extra_info["p99_ms"] = ordered[int(len(ordered) * 0.99)] * 1000


async def _sqlite_throughput(count: int, folder: Path) -> float:
    """The same workload on SqliteStorage with synchronous=FULL, one process."""
    client = Client(SqliteStorage(folder / f"bench-{time.monotonic_ns()}.db"))
    config = WorkerConfig(max_concurrent_activities=1_000)
    worker = Worker(
        client, task_queue="bench", workflows=[three_no_ops], activities=[no_op], config=config
    )
    started = time.perf_counter()
    handles = await asyncio.gather(
        *(
            client.start_workflow(three_no_ops, id=f"w-{index}", task_queue="bench")
            for index in range(count)
        )
    )
    async with worker:
        await asyncio.gather(*(handle.result() for handle in handles))
    rate = count / (time.perf_counter() - started)
    await client.close()
    return rate


def test_sqlite_throughput_1000_workflows_of_3_activities(benchmark: Any, tmp_path: Path) -> None:
    rates: list[float] = []

    def run() -> None:
        rates.append(mainspring.run(_sqlite_throughput(WORKFLOWS, tmp_path)))

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["workflows_per_second"] = statistics.median(rates)


async def _sqlite_latencies(samples: int, folder: Path) -> list[float]:
    client = Client(SqliteStorage(folder / f"latency-{time.monotonic_ns()}.db"))
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


def test_sqlite_single_workflow_latency(benchmark: Any, tmp_path: Path) -> None:
    latencies: list[float] = []

    def run() -> None:
        latencies.extend(mainspring.run(_sqlite_latencies(100, tmp_path)))

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    ordered = sorted(latencies)
    benchmark.extra_info["p50_ms"] = ordered[len(ordered) // 2] * 1000
    benchmark.extra_info["p99_ms"] = ordered[int(len(ordered) * 0.99)] * 1000
