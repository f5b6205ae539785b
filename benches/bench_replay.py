"""Replay throughput: full Python path (workflow code resumed for every activity), and the
native core alone driven with prerecorded commands (FFI included, no workflow code).

Run: ``pytest benches/bench_replay.py --benchmark-enable -p no:randomly``
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mainspring import Replayer, _core
from mainspring._protocol import COMMAND_COMPLETE_WORKFLOW, COMMAND_SCHEDULE_ACTIVITY

from .conftest import sequential_history, sequential_steps

SIZES = [1_000, 10_000]


def _rates(benchmark: Any, activities: int) -> None:
    stats = benchmark.stats.stats
    benchmark.extra_info["activities_per_second_median"] = round(activities / stats.median)
    benchmark.extra_info["activities_per_second_best"] = round(activities / stats.min)


@pytest.mark.parametrize("activities", SIZES)
def test_replay_full_python_path(benchmark: Any, activities: int) -> None:
    history = sequential_history(activities)
    replayer = Replayer(workflows=[sequential_steps])
    benchmark.extra_info["activities"] = activities
    benchmark.pedantic(replayer.replay, args=(history,), rounds=10, iterations=1, warmup_rounds=2)
    _rates(benchmark, activities)


def _replay_core_only(encoded: bytes, scripts: list[list[tuple[Any, ...]]]) -> None:
    run = _core.WorkflowRun()
    run.add_events(encoded)
    for commands in scripts:
        run.next_activation(0, False)
        run.complete(commands)


@pytest.mark.parametrize("activities", SIZES)
def test_replay_core_only(benchmark: Any, activities: int) -> None:
    history = sequential_history(activities)
    schedule = [
        [(COMMAND_SCHEDULE_ACTIVITY, seq, "step", b"null", "bench", None, None, 30_000, None,
          1000, 2.0, None, 0, [])]
        for seq in range(1, activities + 1)
    ]  # fmt: skip
    scripts = [*schedule, [(COMMAND_COMPLETE_WORKFLOW, str(activities).encode())]]
    benchmark.extra_info["activities"] = activities
    benchmark.pedantic(
        _replay_core_only, args=(history.encoded, scripts), rounds=10, iterations=1, warmup_rounds=2
    )
    _rates(benchmark, activities)


def test_replay_cost_is_linear_in_history_length(benchmark: Any) -> None:
    """Interleaves the 1,000- and 10,000-activity replays and compares their best rounds, so
    the ratio is not skewed by the machine's speed drifting between two separate benches."""
    replayer = Replayer(workflows=[sequential_steps])
    small, large = sequential_history(1_000), sequential_history(10_000)
    best = {1_000: float("inf"), 10_000: float("inf")}

    def interleaved() -> None:
        for size, history in ((1_000, small), (10_000, large)):
            started = time.perf_counter()
            replayer.replay(history)
            best[size] = min(best[size], time.perf_counter() - started)

    benchmark.pedantic(interleaved, rounds=15, iterations=1, warmup_rounds=1)
    benchmark.extra_info["ratio_10k_to_1k"] = round(best[10_000] / best[1_000], 2)
    benchmark.extra_info["activities_per_second_1k"] = round(1_000 / best[1_000])
    benchmark.extra_info["activities_per_second_10k"] = round(10_000 / best[10_000])
