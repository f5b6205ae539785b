"""PostgreSQL: throughput with the client in the worker's process and in another, with two
worker processes, behind a 1 ms TCP proxy, and one workflow's latency, each scenario in a fresh
process (`postgres_scenarios.py`); what it prints lands in the benchmark's ``extra_info``.
Needs the server `scripts/services.sh start` runs (or ``$MAINSPRING_TEST_POSTGRES``).

Run: ``pytest benches/bench_postgres.py --benchmark-only``
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.postgres_server import require_postgres

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(1800)


def _record(benchmark: Any, name: str) -> dict[str, Any]:
    require_postgres()
    results: list[dict[str, Any]] = []

    def run() -> None:
        command = [sys.executable, "-m", "benches.postgres_scenarios", name]
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        results.append(json.loads(finished.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(results[0])
    return results[0]


def test_client_in_the_workers_process(benchmark: Any) -> None:
    _record(benchmark, "same_process")


def test_client_in_another_process(benchmark: Any) -> None:
    _record(benchmark, "client_apart")


def test_two_worker_processes(benchmark: Any) -> None:
    _record(benchmark, "two_workers")


def test_one_workflow_start_to_result(benchmark: Any) -> None:
    _record(benchmark, "latency")


def test_behind_a_1_ms_proxy_against_loopback(benchmark: Any) -> None:
    _record(benchmark, "proxy")
