"""Load scenarios, each run in a fresh process so its peak RSS is its own:
``python -m benches.load_scenarios NAME [--size N]`` prints one JSON object.
`bench_load.py` runs them under pytest-benchmark; BENCHMARKS.md records what they print.

Every worker here runs at ``WorkerConfig()`` defaults unless the scenario is about a setting
(then it says which, and the defaults run beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import mainspring
from mainspring import (
    Client,
    Signal,
    Worker,
    WorkerConfig,
    WorkflowContext,
    activity,
    workflow,
)
from mainspring.storage import SqliteStorage

from .conftest import no_op, three_no_ops

QUEUE = "load"
# The figures BENCHMARKS.md quotes (and scripts/plot_scaling.py draws), one file a scenario.
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("MAINSPRING_BENCH_CACHE", Path.home() / ".cache" / "mainspring-bench"))


def rss_mib() -> float:
    """The process's resident set now."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# `slot_bound`'s worker and what it samples as the last queued attempt starts.
_BOUND: dict[str, Any] = {}


@activity
async def nap() -> None:
    bound = _BOUND.get("worker")
    if bound is not None:
        _BOUND["started"] += 1
        if _BOUND["started"] == _BOUND["size"]:  # the last one queued: the queue is empty now
            _BOUND["last_start"] = (asyncio.get_running_loop().time(), bound.stats())
    await asyncio.sleep(0.05)


@workflow
async def one_nap(ctx: WorkflowContext) -> None:
    await ctx.execute_activity(nap, start_to_close_timeout=timedelta(seconds=60))


@activity
async def timed_step(index: int) -> float:
    return time.perf_counter()


@workflow
async def timed_steps(ctx: WorkflowContext, count: int) -> list[float]:
    stamps = []
    for index in range(count):
        stamps.append(
            await ctx.execute_activity(
                timed_step, index, start_to_close_timeout=timedelta(seconds=60)
            )
        )
    return stamps


class Wake(Signal):
    pass


@workflow
async def sleeps_until(ctx: WorkflowContext, at_ms: int) -> None:
    await ctx.sleep(timedelta(milliseconds=max(1, at_ms - int(ctx.now().timestamp() * 1000))))


@workflow
async def probe(ctx: WorkflowContext) -> None:
    return None


@workflow
async def parked(ctx: WorkflowContext) -> float:
    await ctx.wait_signal(Wake)
    return 0.0


async def _run_workflows(
    client: Client, count: int, *, script: bool = False, prefix: str | None = None
) -> float:
    """Starts `count` three_no_ops workflows and awaits them all; returns workflows/s. A
    service starts and awaits them concurrently; a script, one `await start_workflow` after
    another in a for loop, then awaits the results."""
    prefix = prefix or uuid.uuid4().hex[:8]
    started = time.perf_counter()
    if script:
        handles = []
        for index in range(count):
            handles.append(
                await client.start_workflow(three_no_ops, id=f"{prefix}-{index}", task_queue=QUEUE)
            )
    else:
        handles = await asyncio.gather(
            *(
                client.start_workflow(three_no_ops, id=f"{prefix}-{index}", task_queue=QUEUE)
                for index in range(count)
            )
        )
    await asyncio.gather(*(handle.result() for handle in handles))
    return count / (time.perf_counter() - started)


def _worker(
    client: Client,
    config: WorkerConfig | None = None,
    *,
    workflows: Sequence[Callable[..., Any]] = (three_no_ops,),
    activities: Sequence[Callable[..., Any]] = (no_op,),
) -> Worker:
    return Worker(
        client, task_queue=QUEUE, workflows=workflows, activities=activities, config=config
    )


async def _throughput_on(
    path: Path, count: int, config: WorkerConfig | None, script: bool
) -> float:
    client = Client(SqliteStorage(path))
    try:
        async with _worker(client, config):
            return await _run_workflows(client, count, script=script)
    finally:
        await client.close()


# Scenarios. Each returns a JSON-able dict.


async def slots(size: int) -> dict[str, Any]:
    """Defaults (100 slots) against 1,000 slots, SQLite, `size` x 3 no-op activities started
    concurrently; alternating, fresh file each, in this one process (the gate: within 20%)."""
    folder = Path(tempfile.mkdtemp(prefix="mainspring-slots-"))
    defaults: list[float] = []
    wide: list[float] = []
    for round_index in range(5):
        for config, rates in (
            (None, defaults),
            (WorkerConfig(max_concurrent_activities=1_000), wide),
        ):
            path = folder / f"{round_index}-{len(rates)}-{config is None}.db"
            rates.append(await _throughput_on(path, size, config, script=False))
    return {
        "defaults_wf_per_s": statistics.median(defaults),
        "slots_1000_wf_per_s": statistics.median(wide),
        "ratio": statistics.median(defaults) / statistics.median(wide),
        "defaults_runs": defaults,
        "slots_1000_runs": wide,
    }


async def script(size: int) -> dict[str, Any]:
    """A script's shape (a for loop of `await start_workflow`) against a service's
    (concurrent), SQLite, defaults, alternating."""
    folder = Path(tempfile.mkdtemp(prefix="mainspring-script-"))
    service: list[float] = []
    loop: list[float] = []
    for round_index in range(3):
        for is_script, rates in ((False, service), (True, loop)):
            path = folder / f"{round_index}-{is_script}.db"
            rates.append(await _throughput_on(path, size, None, script=is_script))
    return {
        "service_wf_per_s": statistics.median(service),
        "script_wf_per_s": statistics.median(loop),
        "service_runs": service,
        "script_runs": loop,
    }


async def slot_bound(size: int) -> dict[str, Any]:
    """`size` workflows of one async activity that sleeps 50 ms, defaults (100 slots): the
    slots bound throughput at 100 / 0.05 s = 2,000 activities/s. Utilisation is the share of
    the slots' time they were held: while work was queued (from the worker's start until the
    last attempt started), and over the whole run (which ends with fewer attempts than slots)."""
    folder = Path(tempfile.mkdtemp(prefix="mainspring-bound-"))
    client = Client(SqliteStorage(folder / "bound.db"))
    worker = _worker(client, workflows=[one_nap], activities=[nap])
    handles = await asyncio.gather(
        *(
            client.start_workflow(one_nap, id=f"n-{index}", task_queue=QUEUE)
            for index in range(size)
        )
    )
    clock = asyncio.get_running_loop().time  # the clock the worker counts slot time by
    before = worker.stats()
    _BOUND.update(worker=worker, size=size, started=0)
    started = clock()
    try:
        async with worker:
            await asyncio.gather(*(handle.result() for handle in handles))
            after = worker.stats()
            elapsed = clock() - started
    finally:
        _BOUND.pop("worker", None)
    await client.close()
    capacity = before.activity_task_slots_used + before.activity_task_slots_available
    slot_seconds = after.activity_slot_seconds - before.activity_slot_seconds
    last_start, at_last_start = _BOUND["last_start"]
    queued_seconds = last_start - started
    return {
        "activities_per_s": size / elapsed,
        "bound_activities_per_s": capacity / 0.05,
        "ratio_to_bound": (size / elapsed) / (capacity / 0.05),
        "slot_utilisation_while_queued": (
            (at_last_start.activity_slot_seconds - before.activity_slot_seconds)
            / (queued_seconds * capacity)
        ),
        "slot_utilisation": slot_seconds / (elapsed * capacity),
        "elapsed_s": elapsed,
    }


def _closed_runs_file(runs: int) -> Path:
    """A SQLite file holding `runs` closed three_no_ops runs, built by the engine itself
    (waves of 20,000 started and awaited on one worker at the defaults, the file opened with
    synchronous=NORMAL to build it faster: only the build, never a measurement, uses it) and
    cached between runs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"closed-{runs}.db"
    if path.exists():
        return path
    building = path.with_suffix(".building")
    for leftover in CACHE.glob(building.name + "*"):
        leftover.unlink()

    async def build() -> None:
        client = Client(SqliteStorage(building, synchronous="NORMAL"))
        done = 0
        async with _worker(client):
            while done < runs:
                wave = min(20_000, runs - done)
                await _run_workflows(client, wave, prefix=f"old-{done}")
                done += wave
                print(f"built {done} closed runs", file=sys.stderr, flush=True)
        await client.close()

    mainspring.run(build())
    for suffix in ("-wal", "-shm"):
        Path(str(building) + suffix).unlink(missing_ok=True)
    building.rename(path)
    return path


async def _warm_rates(path: Path, rounds: int) -> tuple[float, list[float]]:
    """One worker on `path`: the first 1,000 workflows after the file is opened (its pages
    still cold), then `rounds` more of 1,000 each (warm, as a running service sees them)."""
    client = Client(SqliteStorage(path))
    try:
        async with _worker(client):
            cold = await _run_workflows(client, 1_000)
            warm = [await _run_workflows(client, 1_000) for _ in range(rounds)]
    finally:
        await client.close()
    return cold, warm


async def store_size(size: int) -> dict[str, Any]:
    """1,000 new workflows at a time on an empty file and on one holding `size` closed runs,
    side by side (file after file, twice, each on a running worker; the target: within 20%),
    and the first 1,000 after each file is opened, which pays for reading its pages in."""
    big = _closed_runs_file(size)
    empty = Path(tempfile.mkdtemp(prefix="mainspring-size-")) / "empty.db"
    empty_cold: list[float] = []
    empty_warm: list[float] = []
    big_cold: list[float] = []
    big_warm: list[float] = []
    for _ in range(2):
        for path, colds, warms in ((empty, empty_cold, empty_warm), (big, big_cold, big_warm)):
            cold, warm = await _warm_rates(path, 4)
            colds.append(cold)
            warms.extend(warm)
    return {
        "closed_runs": size,
        "file_mib": big.stat().st_size / 2**20,
        "empty_wf_per_s": statistics.median(empty_warm),
        "full_wf_per_s": statistics.median(big_warm),
        "ratio": statistics.median(big_warm) / statistics.median(empty_warm),
        "empty_first_1000_after_open_wf_per_s": statistics.median(empty_cold),
        "full_first_1000_after_open_wf_per_s": statistics.median(big_cold),
        "first_1000_ratio": statistics.median(big_cold) / statistics.median(empty_cold),
        "empty_runs": empty_warm,
        "full_runs": big_warm,
    }


def _count_closed(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return int(
            connection.execute("SELECT COUNT(*) FROM runs WHERE status = 'COMPLETED'").fetchone()[0]
        )


async def backlog(size: int) -> dict[str, Any]:
    """`size` workflows started before any worker runs, then drained by one worker at the
    defaults: the rate per tenth of the backlog, and the worker's RSS."""
    folder = Path(tempfile.mkdtemp(prefix="mainspring-backlog-"))
    path = folder / "backlog.db"
    client = Client(SqliteStorage(path))
    start_began = time.perf_counter()
    for first in range(0, size, 10_000):
        await asyncio.gather(
            *(
                client.start_workflow(three_no_ops, id=f"b-{index}", task_queue=QUEUE)
                for index in range(first, min(size, first + 10_000))
            )
        )
    start_seconds = time.perf_counter() - start_began
    rss_before = rss_mib()
    step = max(1, size // 10)
    marks: list[float] = []
    rss_samples: list[float] = []
    worker = _worker(client)
    async with worker:
        began = time.perf_counter()
        # The worker counts the runs it closes: each tenth of the backlog's is marked.
        while len(marks) < 10:
            await asyncio.sleep(0.05)
            closed = worker.stats().workflow_completed
            while len(marks) < 10 and closed >= step * (len(marks) + 1):
                marks.append(time.perf_counter() - began)
                rss_samples.append(rss_mib())
        total = marks[-1]
        stats = worker.stats()
    assert await asyncio.to_thread(_count_closed, path) == size
    await client.close()
    durations = [marks[0]] + [later - earlier for earlier, later in itertools.pairwise(marks)]
    return {
        "workflows": size,
        "start_wf_per_s": size / start_seconds,
        "drain_wf_per_s": size / total,
        "wf_per_s_per_tenth": [step / duration for duration in durations],
        "rss_mib_before_worker": rss_before,
        "rss_mib_per_tenth": rss_samples,
        "cache_hits": stats.sticky_cache_hit,
        "cache_misses": stats.sticky_cache_miss,
        "cache_evictions": stats.sticky_cache_total_forced_eviction,
        "peak_rss_mib": peak_rss_mib(),
    }


async def long_history(size: int) -> dict[str, Any]:
    """One workflow of `size` sequential activities, live on SQLite: the cost of the last
    1,000 steps against the first 1,000 (the target: at most 1.2x)."""
    folder = Path(tempfile.mkdtemp(prefix="mainspring-long-"))
    client = Client(SqliteStorage(folder / "long.db"))
    async with _worker(client, workflows=[timed_steps], activities=[timed_step]):
        handle = await client.start_workflow(timed_steps, size, id="long", task_queue=QUEUE)
        stamps = await handle.result()
    await client.close()
    window = min(1_000, size // 2)
    first = stamps[window] - stamps[0]
    last = stamps[-1] - stamps[-1 - window]
    return {
        "steps": size,
        "first_steps_ms_each": first / window * 1000,
        "last_steps_ms_each": last / window * 1000,
        "ratio_last_to_first": last / first,
        "steps_per_s": (size - 1) / (stamps[-1] - stamps[0]),
        "peak_rss_mib": peak_rss_mib(),
    }


async def _signal_latencies(client: Client, ids: list[str]) -> list[float]:
    latencies = []
    for workflow_id in ids:
        handle = client.get_workflow_handle(workflow_id)
        began = time.perf_counter()
        await handle.signal(Wake())
        await handle.result()
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


async def parked_workflows(size: int) -> dict[str, Any]:
    """`size` workflows parked in wait_signal, all cached (defaults: 10,000 instances):
    RSS and bytes per cached workflow; then signal->result latency of cached ones, and of
    evicted ones (a second worker that caches 100)."""
    folder = Path(tempfile.mkdtemp(prefix="mainspring-parked-"))
    client = Client(SqliteStorage(folder / "parked.db"))
    worker = _worker(client, workflows=[parked], activities=[])
    rss_empty = rss_mib()
    async with worker:
        await asyncio.gather(
            *(
                client.start_workflow(parked, id=f"p-{index}", task_queue=QUEUE)
                for index in range(size)
            )
        )
        while worker.stats().sticky_cache_size < size:
            await asyncio.sleep(0.05)
        rss_parked = rss_mib()
        stats = worker.stats()
        cached = await _signal_latencies(client, [f"p-{index}" for index in range(size - 20, size)])
    small = WorkerConfig(max_cached_workflows=100)
    async with _worker(client, small, workflows=[parked], activities=[]):
        evicted = await _signal_latencies(client, [f"p-{index}" for index in range(20)])
    await client.close()
    return {
        "parked": size,
        "rss_mib_empty_worker": rss_empty,
        "rss_mib_parked": rss_parked,
        "bytes_per_cached_workflow": (rss_parked - rss_empty) * 2**20 / size,
        "cache_history_bytes": stats.sticky_cache_bytes,
        "signal_to_result_ms_cached_p50": statistics.median(cached),
        "signal_to_result_ms_evicted_p50": statistics.median(evicted),
        "peak_rss_mib": peak_rss_mib(),
    }


async def soak(size: int) -> dict[str, Any]:
    """`size` workflows through one worker in waves of 2,000 (a service's traffic): RSS after
    the first tenth and at the end (the target: within 10%)."""
    folder = Path(tempfile.mkdtemp(prefix="mainspring-soak-"))
    client = Client(SqliteStorage(folder / "soak.db"))
    samples: list[tuple[int, float]] = []
    began = time.perf_counter()
    async with _worker(client):
        done = 0
        while done < size:
            await _run_workflows(client, 2_000, prefix=f"s-{done}")
            done += 2_000
            if done % (size // 10) == 0:
                samples.append((done, rss_mib()))
    elapsed = time.perf_counter() - began
    await client.close()
    first, last = samples[0][1], samples[-1][1]
    return {
        "workflows": size,
        "wf_per_s": size / elapsed,
        "rss_mib_by_workflows": samples,
        "rss_after_first_tenth_mib": first,
        "rss_at_end_mib": last,
        "ratio_end_to_first_tenth": last / first,
    }


async def timer_storm(size: int) -> dict[str, Any]:
    """`size` workflows whose timers all fall due at one instant, on a running worker at the
    defaults: how long until every one has closed, and meanwhile the start-to-result latency of
    a probe workflow started one after another (against the same before the instant). A tick
    applies at most `tick_batch` (1,000) deadlines: the store keeps answering while it works
    through them."""
    folder = Path(tempfile.mkdtemp(prefix="mainspring-timers-"))
    client = Client(SqliteStorage(folder / "timers.db"))
    worker = _worker(client, workflows=[sleeps_until, probe], activities=[no_op])

    async def probe_latencies(until: Callable[[], bool]) -> list[float]:
        latencies = []
        while not until():
            began = time.perf_counter()
            handle = await client.start_workflow(
                probe, id=f"probe-{uuid.uuid4().hex}", task_queue=QUEUE
            )
            await handle.result()
            latencies.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(0.01)
        return latencies

    async with worker:
        # Far enough ahead that every start (and its first task) is in before the instant.
        lead_s = 1.0 + size / 4_000
        at_ms = int(time.time() * 1000 + lead_s * 1000)
        handles = []
        for first in range(0, size, 10_000):
            handles += await asyncio.gather(
                *(
                    client.start_workflow(sleeps_until, at_ms, id=f"t-{index}", task_queue=QUEUE)
                    for index in range(first, min(size, first + 10_000))
                )
            )
        before_instant = at_ms / 1000 - time.time()
        # Awaited from now on (a burst of reads of its own, settled before the instant).
        results = asyncio.ensure_future(asyncio.gather(*(h.result() for h in handles)))
        calm = await probe_latencies(lambda: time.time() * 1000 >= at_ms - 100)
        storm = await probe_latencies(results.done)
        await results
        drained_s = time.time() - at_ms / 1000
    await client.close()
    return {
        "timers": size,
        "lead_left_s": before_instant,
        "all_closed_after_s": drained_s,
        "timers_per_s": size / drained_s,
        "probe_p50_ms_before": statistics.median(calm) if calm else None,
        "probe_p50_ms_during": statistics.median(storm) if storm else None,
        "probe_p99_ms_during": sorted(storm)[int(len(storm) * 0.99)] if storm else None,
        "probe_max_ms_during": max(storm) if storm else None,
        "probe_ms_during": [round(value, 1) for value in storm],
        "probes_during": len(storm),
    }


SCENARIOS: dict[str, tuple[Callable[[int], Awaitable[dict[str, Any]]], int]] = {
    "slots": (slots, 1_000),
    "script": (script, 1_000),
    "slot_bound": (slot_bound, 10_000),
    "long_history": (long_history, 10_000),
    "parked_workflows": (parked_workflows, 10_000),
    "store_size": (store_size, 1_000_000),
    "backlog": (backlog, 100_000),
    "soak": (soak, 200_000),
    "timer_storm": (timer_storm, 100_000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument(
        "--save", action="store_true", help=f"also write the result to {RESULTS}/NAME.json"
    )
    arguments = parser.parse_args()
    scenario, default_size = SCENARIOS[arguments.scenario]
    result = mainspring.run(scenario(arguments.size or default_size))
    if arguments.save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{arguments.scenario}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
