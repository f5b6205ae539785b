"""PostgreSQL scenarios (issue: scale out on PostgreSQL), each in a fresh process:
``python -m benches.postgres_scenarios NAME [--size N] [--dsn DSN] [--save]`` prints one JSON
object. `bench_postgres.py` runs them under pytest-benchmark; BENCHMARKS.md records them.

Every worker runs at ``WorkerConfig()`` defaults, on ``PostgresStorage`` defaults, against the
server at ``--dsn`` (default: the cluster ``scripts/services.sh start`` runs; stock settings:
fsync and synchronous_commit on). Each scenario uses a schema of its own, dropped after.

- ``same_process``: 1,000 workflows x 3 no-op activities started concurrently, the client in
  the worker's process.
- ``client_apart``: the same, the worker in another process (``benches.postgres_worker``).
- ``two_workers``: the same with two worker processes (2 cores shared with the server and the
  client: this measures contention, not scale).
- ``latency``: one workflow at a time, start to result (p50, p99), client in the worker's
  process.
- ``proxy``: ``same_process`` through the 1 ms-each-way TCP proxy (``tests.tcp_proxy``, its
  own process) and straight to the server, interleaved, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mainspring
from mainspring import Client, Worker

from .conftest import no_op, three_no_ops

QUEUE = "postgres-bench"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:54329/postgres"


def _url(dsn: str, schema: str, port: int | None = None) -> str:
    parts = urlsplit(dsn)
    if port is not None:
        parts = parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}")
    return parts._replace(query=f"schema={schema}").geturl()


async def _drop(dsn: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def _throughput(client: Client, count: int, prefix: str) -> float:
    started = time.perf_counter()
    handles = await asyncio.gather(
        *(
            client.start_workflow(three_no_ops, id=f"{prefix}-{index}", task_queue=QUEUE)
            for index in range(count)
        )
    )
    await asyncio.gather(*(handle.result() for handle in handles))
    return count / (time.perf_counter() - started)


async def _in_process(url: str, count: int, rounds: int = 3) -> list[float]:
    client = Client(url)
    figures = []
    try:
        async with Worker(client, task_queue=QUEUE, workflows=[three_no_ops], activities=[no_op]):
            await _throughput(client, 100, "warm")
            for round_number in range(rounds):
                figures.append(await _throughput(client, count, f"r{round_number}"))
    finally:
        await client.close()
    return figures


async def same_process(dsn: str, count: int) -> dict[str, Any]:
    schema = f"bench_{secrets.token_hex(4)}"
    try:
        figures = await _in_process(_url(dsn, schema), count)
    finally:
        await _drop(dsn, schema)
    return {
        "workflows": count,
        "workflows_per_second": statistics.median(figures),
        "rounds": figures,
    }


def _workers(url: str, how_many: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "benches.postgres_worker", url],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(how_many)
    ]


async def _apart(dsn: str, count: int, workers: int) -> dict[str, Any]:
    schema = f"bench_{secrets.token_hex(4)}"
    url = _url(dsn, schema)
    client = Client(url)
    await client.storage.connect()  # type: ignore[attr-defined]  # migrated before workers start
    processes = _workers(url, workers)
    try:
        await _throughput(client, 100, "warm")
        figures = [await _throughput(client, count, f"r{index}") for index in range(3)]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        await client.close()
        await _drop(dsn, schema)
    return {
        "workflows": count,
        "worker_processes": workers,
        "workflows_per_second": statistics.median(figures),
        "rounds": figures,
    }


async def client_apart(dsn: str, count: int) -> dict[str, Any]:
    return await _apart(dsn, count, 1)


async def two_workers(dsn: str, count: int) -> dict[str, Any]:
    return await _apart(dsn, count, 2)


async def latency(dsn: str, count: int) -> dict[str, Any]:
    schema = f"bench_{secrets.token_hex(4)}"
    client = Client(_url(dsn, schema))
    samples = []
    try:
        async with Worker(client, task_queue=QUEUE, workflows=[three_no_ops], activities=[no_op]):
            for index in range(20):
                await (
                    await client.start_workflow(three_no_ops, id=f"w{index}", task_queue=QUEUE)
                ).result()
            for index in range(count):
                started = time.perf_counter()
                handle = await client.start_workflow(three_no_ops, id=f"s{index}", task_queue=QUEUE)
                await handle.result()
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        await client.close()
        await _drop(dsn, schema)
    samples.sort()
    return {
        "samples": count,
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[int(len(samples) * 0.99) - 1],
    }


async def proxy(dsn: str, count: int) -> dict[str, Any]:
    target = urlsplit(dsn)
    port = 54400 + secrets.randbelow(500)
    relay = subprocess.Popen(
        [sys.executable, "-m", "tests.tcp_proxy", str(target.port or 5432), str(port), "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert relay.stdout is not None
    relay.stdout.readline()  # it says where it listens once it does
    direct: list[float] = []
    proxied: list[float] = []
    try:
        for _ in range(2):  # interleaved: this machine drifts between runs
            for figures, via in ((direct, None), (proxied, port)):
                schema = f"bench_{secrets.token_hex(4)}"
                try:
                    figures += await _in_process(_url(dsn, schema, via), count, rounds=1)
                finally:
                    await _drop(dsn, schema)
    finally:
        relay.terminate()
        relay.wait(timeout=30)
    loopback, behind = statistics.median(direct), statistics.median(proxied)
    return {
        "workflows": count,
        "loopback_workflows_per_second": loopback,
        "proxied_workflows_per_second": behind,
        "ratio": behind / loopback,
        "delay_ms_each_way": 1,
    }


SCENARIOS = {
    "same_process": (same_process, 1_000),
    "client_apart": (client_apart, 1_000),
    "two_workers": (two_workers, 1_000),
    "latency": (latency, 200),
    "proxy": (proxy, 1_000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--dsn", default=os.environ.get("MAINSPRING_TEST_POSTGRES", DEFAULT_DSN))
    parser.add_argument(
        "--save", action="store_true", help=f"also write the result to {RESULTS}/NAME.json"
    )
    arguments = parser.parse_args()
    scenario, default_size = SCENARIOS[arguments.scenario]
    result = mainspring.run(scenario(arguments.dsn, arguments.size or default_size))
    result = {"scenario": arguments.scenario, **result}
    if arguments.save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"postgres_{arguments.scenario}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
