"""Load: the defaults against tuned slots, a script's shape against a service's, slot-bound
activities, a long history, parked workflows, and behind the opt-in ``big`` marker a
1,000,000-run file, a 100,000 backlog and a 200,000-workflow soak. Each scenario runs in a
fresh process (`load_scenarios.py`) so its RSS is its own; what it prints lands in the
benchmark's ``extra_info``.

Run: ``pytest benches/bench_load.py --benchmark-only`` (add ``-m big`` for the big ones,
``-m "big or not big"`` for all).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The suite's 60 s per test is for tests; a scenario takes up to several minutes.
pytestmark = pytest.mark.timeout(3 * 3600)


def _scenario(name: str, size: int | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benches.load_scenarios", name]
    if size is not None:
        command += ["--size", str(size)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def _record(benchmark: Any, name: str, size: int | None = None) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    benchmark.pedantic(lambda: results.append(_scenario(name, size)), rounds=1, iterations=1)
    benchmark.extra_info.update(results[0])
    return results[0]


def test_defaults_against_1000_slots(benchmark: Any) -> None:
    _record(benchmark, "slots")


def test_script_against_service(benchmark: Any) -> None:
    _record(benchmark, "script")


def test_slot_bound_activities(benchmark: Any) -> None:
    _record(benchmark, "slot_bound")


def test_long_history(benchmark: Any) -> None:
    _record(benchmark, "long_history")


def test_parked_workflows(benchmark: Any) -> None:
    _record(benchmark, "parked_workflows")


@pytest.mark.big
def test_a_store_of_a_million_closed_runs(benchmark: Any) -> None:
    _record(benchmark, "store_size")


@pytest.mark.big
def test_backlog_of_100000(benchmark: Any) -> None:
    _record(benchmark, "backlog")


@pytest.mark.big
def test_soak_of_200000(benchmark: Any) -> None:
    _record(benchmark, "soak")


@pytest.mark.big
def test_timer_storm_of_100000(benchmark: Any) -> None:
    _record(benchmark, "timer_storm")
