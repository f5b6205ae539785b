"""What every engine's workload shares: the command line, the measurement (warm-up, sequential
latency, concurrent throughput, CPU) and the one JSON line a workload prints.

Standard library only: each workload imports it from its own venv, where only that engine and
its dependencies are installed. An engine's module supplies two coroutines, one that starts a
workflow of 3 no-op activities and returns a handle and one that awaits a handle's result; the
measuring is done here, the same way for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:54329/postgres"

#: Workflows run before anything is measured: imports, connections, prepared statements, the
#: sandbox's module cache and the like are paid once per process, not per workflow.
WARM_UP_WORKFLOWS = 20

StartWorkflow = Callable[[str], Awaitable[Any]]
AwaitResult = Callable[[Any], Awaitable[Any]]


@dataclass
class Options:
    storage: str
    workflows: int
    latency_samples: int
    rounds: int
    postgres_dsn: str


@dataclass
class Figures:
    """What a workload prints (one JSON object on one line); `run.py` reads it."""

    engine: str
    version: str
    storage: str
    workflows: int
    rounds: int
    workflows_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_workflow: float
    server_cpu_ms_per_workflow: float | None
    server: str | None
    note: str = ""


def parse_options(storages: Sequence[str], argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--storage", choices=storages, default=storages[0])
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-dsn", default=DEFAULT_POSTGRES_DSN)
    arguments = parser.parse_args(argv)
    return Options(
        storage=arguments.storage,
        workflows=arguments.workflows,
        latency_samples=arguments.latency_samples,
        rounds=arguments.rounds,
        postgres_dsn=arguments.postgres_dsn,
    )


def emit(figures: Figures) -> None:
    print(json.dumps(asdict(figures)), flush=True)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- CPU of another process, from /proc ------------------------------------------------------

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces), so
    index 0 is field 3 (state) of proc(5)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    return parents


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, waiting = [], [root]
    while waiting:
        for child in children.get(waiting.pop(), []):
            found.append(child)
            waiting.append(child)
    return found


def tree_cpu_seconds(root: int) -> float | None:
    """User plus system CPU of `root` and every live descendant, plus what `root`'s reaped
    children used (cutime, cstime): a PostgreSQL backend that exits during a run is counted
    through the postmaster that waited for it. None where /proc does not show `root`."""
    fields = _stat_fields(root)
    if fields is None:
        return None
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    for pid in _descendants(root):
        child = _stat_fields(pid)
        if child is not None:
            ticks += int(child[11]) + int(child[12])
    return ticks / _TICKS_PER_SECOND


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            columns = line.split()
            local_port = int(columns[1].rsplit(":", 1)[1], 16)
            if local_port == port and columns[3] == "0A":  # 0A: LISTEN
                inodes.add(columns[9])
    return inodes


def listening_pid(port: int) -> int | None:
    """The process that listens on TCP `port` on this machine, by matching the socket's inode
    in /proc/net/tcp against every process's open files; None if it cannot be seen (another
    user's process without root, or no /proc)."""
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not targets:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for descriptor in (entry / "fd").iterdir():
                if os.readlink(descriptor) in targets:
                    return int(entry.name)
        except OSError:
            continue
    return None


def postgres_server_pid(dsn: str) -> int | None:
    """The postmaster behind `dsn` when it runs on this machine (a loopback host)."""
    parts = urlsplit(dsn)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    return listening_pid(parts.port or 5432)


class ServerCpu:
    """Counts a server process tree's CPU over a window; a no-op without a pid."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._started: float | None = None

    def start(self) -> None:
        self._started = tree_cpu_seconds(self.pid) if self.pid is not None else None

    def seconds(self) -> float | None:
        if self.pid is None or self._started is None:
            return None
        now = tree_cpu_seconds(self.pid)
        return None if now is None else now - self._started


# --- the measurement -------------------------------------------------------------------------


@dataclass
class Measured:
    workflows_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_workflow: float
    server_cpu_ms_per_workflow: float | None


async def _one(start: StartWorkflow, result: AwaitResult, workflow_id: str) -> float:
    began = time.perf_counter()
    await result(await start(workflow_id))
    return time.perf_counter() - began


async def _concurrently(
    start: StartWorkflow, result: AwaitResult, workflow_ids: Sequence[str]
) -> None:
    handles = await asyncio.gather(*(start(workflow_id) for workflow_id in workflow_ids))
    await asyncio.gather(*(result(handle) for handle in handles))


async def measure(
    start: StartWorkflow,
    result: AwaitResult,
    options: Options,
    server: ServerCpu | None = None,
) -> Measured:
    """Warm-up, then `latency_samples` workflows one after another (start to result), then
    `rounds` throughput runs of `workflows` started together with asyncio.gather and awaited
    together; the medians of the rounds are kept.

    Latency is measured before any concurrent burst, so that no engine's recovery from one
    (pools, pollers, a server's queues) lands in the figure of a single request."""
    server = server or ServerCpu(None)
    prefix = f"compare-{time.time_ns()}"
    for index in range(WARM_UP_WORKFLOWS):
        await _one(start, result, f"{prefix}-warm-{index}")
    latencies = sorted(
        [
            await _one(start, result, f"{prefix}-latency-{index}")
            for index in range(options.latency_samples)
        ]
    )
    # The concurrent paths warm up too (pools, caches, pollers) before the first timed round.
    await _concurrently(
        start, result, [f"{prefix}-burst-{index}" for index in range(WARM_UP_WORKFLOWS)]
    )
    rates, cpu_per_workflow, server_per_workflow = [], [], []
    for round_number in range(options.rounds):
        workflow_ids = [f"{prefix}-{round_number}-{index}" for index in range(options.workflows)]
        cpu_before = time.process_time()  # every thread of this process, the SDKs' native ones too
        server.start()
        began = time.perf_counter()
        await _concurrently(start, result, workflow_ids)
        elapsed = time.perf_counter() - began
        cpu_per_workflow.append((time.process_time() - cpu_before) / options.workflows)
        server_seconds = server.seconds()
        if server_seconds is not None:
            server_per_workflow.append(server_seconds / options.workflows)
        rates.append(options.workflows / elapsed)
    return Measured(
        workflows_per_second=statistics.median(rates),
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        cpu_ms_per_workflow=statistics.median(cpu_per_workflow) * 1000,
        server_cpu_ms_per_workflow=(
            statistics.median(server_per_workflow) * 1000 if server_per_workflow else None
        ),
    )


def figures(
    engine: str,
    version: str,
    options: Options,
    measured: Measured,
    server: str | None,
    note: str = "",
) -> Figures:
    return Figures(
        engine=engine,
        version=version,
        storage=options.storage,
        workflows=options.workflows,
        rounds=options.rounds,
        workflows_per_second=measured.workflows_per_second,
        p50_ms=measured.p50_ms,
        p99_ms=measured.p99_ms,
        cpu_ms_per_workflow=measured.cpu_ms_per_workflow,
        server_cpu_ms_per_workflow=measured.server_cpu_ms_per_workflow,
        server=server,
        note=note,
    )
