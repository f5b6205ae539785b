"""The `mainspring` command line (also `python -m mainspring`).

    mainspring worker MODULE[:ATTR] --task-queue Q
    mainspring workflow start|list|describe|history|signal|query|cancel|terminate|result ...
    mainspring replay HISTORY.json|FOLDER... --workflows MODULE
    mainspring db migrate

The store is `--db URL`, else `$MAINSPRING_DB`, else `./mainspring.db`: a storage URL
(`mainspring.storage.urls`) or a plain SQLite file path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from .. import Client, History, Replayer, Worker, WorkerConfig, run
from ..errors import MainspringError, NonDeterminismError
from ..storage import Storage
from ..storage.sqlite import DEFAULT_PATH
from ..storage.urls import open_storage
from . import db_commands, workflow_commands
from .loading import load
from .output import UserError, fail

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mainspring", description="Durable workflows for Python.")
    parser.add_argument(
        "--db",
        help="storage URL or SQLite file: sqlite:///app.db, app.db, "
        "postgresql://user@host/db?schema=mainspring (default: $MAINSPRING_DB or ./mainspring.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker = commands.add_parser("worker", help="run a worker for a module's workflows")
    worker.add_argument("module", help="MODULE or MODULE:ATTR declaring the functions")
    environment = os.environ.get
    worker.add_argument(
        "--task-queue",
        default=environment("MAINSPRING_TASK_QUEUE", "default"),
        help="default: $MAINSPRING_TASK_QUEUE or 'default'",
    )
    worker.add_argument(
        "--max-concurrent-activities",
        type=int,
        default=int(environment("MAINSPRING_MAX_CONCURRENT_ACTIVITIES", "100")),
        help="default: $MAINSPRING_MAX_CONCURRENT_ACTIVITIES or 100",
    )
    worker.add_argument(
        "--max-cached-workflows",
        type=int,
        default=int(environment("MAINSPRING_MAX_CACHED_WORKFLOWS", "10000")),
        help="default: $MAINSPRING_MAX_CACHED_WORKFLOWS or 10000",
    )
    workflow_commands.add_parser(commands)
    db_commands.add_parser(commands)
    replay = commands.add_parser("replay", help="replay exported histories through workflow code")
    replay.add_argument("paths", nargs="+", help="history JSON files or folders of them")
    replay.add_argument("--workflows", required=True, help="MODULE[:ATTR] with the workflows")
    replay.add_argument("--json", action="store_true")
    return parser


async def _worker(arguments: argparse.Namespace, client: Client) -> int:
    workflows, activities = load(arguments.module)
    config = WorkerConfig(
        max_concurrent_activities=arguments.max_concurrent_activities,
        max_cached_workflows=arguments.max_cached_workflows,
    )
    worker = Worker(
        client,
        task_queue=arguments.task_queue,
        workflows=workflows,
        activities=activities,
        config=config,
    )
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        # Stop polling and let running activities finish (graceful shutdown).
        with contextlib.suppress(NotImplementedError):  # Windows has no signal handlers
            loop.add_signal_handler(stop_signal, worker.shutdown)
    print(
        f"worker on {arguments.task_queue!r}: {len(workflows)} workflows, "
        f"{len(activities)} activities (Ctrl-C to stop)",
        file=sys.stderr,
    )
    await worker.run()
    return 0


def _replay(arguments: argparse.Namespace) -> int:
    workflows, _ = load(arguments.workflows)
    files: list[Path] = []
    for path in map(Path, arguments.paths):
        if path.is_dir():
            files.extend(sorted(path.glob("*.json")))
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"no such file or folder: {path}")
    replayer = Replayer(workflows=workflows)
    failures: list[dict[str, object]] = []
    show_progress = sys.stderr.isatty() and not arguments.json
    for index, path in enumerate(files, start=1):
        try:
            replayer.replay(History.from_json(path.read_text()))
        except NonDeterminismError as error:
            failures.append({"file": str(path), "event_id": error.event_id,
                             "recorded": error.recorded, "issued": error.issued})  # fmt: skip
        except MainspringError as error:
            failures.append({"file": str(path), "error": f"{type(error).__name__}: {error}"})
        if show_progress:
            done = int(30 * index / len(files))
            print(
                f"\r[{'#' * done}{'.' * (30 - done)}] {index}/{len(files)}", end="", file=sys.stderr
            )
    if show_progress:
        print(file=sys.stderr)
    if arguments.json:
        print(json.dumps({"replayed": len(files), "failed": failures}, indent=2))
    else:
        for failure in failures:
            if "event_id" in failure:
                print(
                    f"{failure['file']}: non-determinism at event {failure['event_id']}: "
                    f"history recorded {failure['recorded']}, code issued {failure['issued']}"
                )
            else:
                print(f"{failure['file']}: {failure['error']}")
        print(f"{len(files) - len(failures)} of {len(files)} histories replay")
    return 1 if failures else 0


def _storage(arguments: argparse.Namespace) -> Storage:
    url = arguments.db or os.environ.get("MAINSPRING_DB") or DEFAULT_PATH
    if url.strip().lower() == "memory:":
        raise UserError("--db memory: keeps nothing once this command ends; name a database")
    if arguments.command == "worker" and _scheme(url) in ("postgresql", "postgres"):
        # A long-running worker keeps the store's own interval (notifications wake it).
        return open_storage(url)
    # A client in another process than the worker learns of changes by looking (SQLite) or
    # by notification backed by looking (PostgreSQL): look often, a command is short.
    return open_storage(url, poll_interval=timedelta(milliseconds=50))


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if "://" in url else ""


async def _with_client(arguments: argparse.Namespace) -> int:
    client = Client(_storage(arguments))
    try:
        if arguments.command == "worker":
            return await _worker(arguments, client)
        if arguments.command == "db":
            return await db_commands.run(client.storage, arguments)
        return await workflow_commands.run(client, arguments)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "replay":
            return _replay(arguments)
        return run(_with_client(arguments))
    except UserError as error:
        return fail(str(error))
    except (MainspringError, TimeoutError) as error:
        return fail(f"{type(error).__name__}: {error}")
    except KeyboardInterrupt:
        return 130


def entry_point() -> None:
    sys.exit(main())
