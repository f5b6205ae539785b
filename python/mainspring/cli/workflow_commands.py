"""`mainspring workflow ...`: start, list, describe, history, signal, query, cancel,
terminate and result, against the storage `--db` / `$MAINSPRING_DB` names."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import datetime, timezone
from typing import Any

from .. import Client, History, _payload
from .._payload import decode
from ..errors import PayloadDecodeError
from ..storage.base import WORKFLOW_STATUSES, WorkflowDescription
from .loading import signal_classes
from .output import UserError, print_fields, print_json, print_table


def _input(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"--input is not JSON: {error}") from None


def _count(text: str) -> int:
    count = int(text)
    if count < 0:
        raise argparse.ArgumentTypeError(f"not a count: {text}")
    return count


def _description_fields(description: WorkflowDescription) -> list[tuple[str, Any]]:
    return [
        ("workflow_id", description.workflow_id),
        ("run_id", description.run_id),
        ("type", description.workflow_type),
        ("task_queue", description.task_queue),
        ("status", description.status),
        ("history_length", description.history_length),
        ("started", description.start_time.isoformat()),
        ("closed", description.close_time.isoformat() if description.close_time else None),
        ("last_task_failure", description.last_task_failure),
        ("task_attempt", description.task_attempt),
        ("dropped_signals", description.dropped_signals),
        ("lease_identity", description.lease_identity),
    ]


def _payload_text(encoded: str) -> str:
    """A history payload (base64 of msgspec JSON) as readable JSON, if it is."""
    raw = base64.b64decode(encoded)
    try:
        return json.dumps(json.loads(raw))
    except ValueError:
        return f"<{len(raw)} bytes>"


def _summary(attributes: dict[str, Any]) -> str:
    parts = []
    for name, value in sorted(attributes.items()):
        if name in ("input", "result", "details") and isinstance(value, str):
            value = _payload_text(value)
        elif name in ("failure", "last_failure") and isinstance(value, dict):
            value = f"{value.get('error_type')}: {value.get('message')}"
        elif name == "options":
            continue
        parts.append(f"{name}={value}")
    text = " ".join(parts)
    return text if len(text) <= 100 else text[:97] + "..."


async def run(client: Client, arguments: argparse.Namespace) -> int:
    command = arguments.workflow_command
    storage = client.storage
    if command == "start":
        handle = await client.start_workflow(
            arguments.type,
            _input(arguments.input),
            id=arguments.id,
            task_queue=arguments.task_queue,
        )
        if arguments.json:
            print_json({"workflow_id": handle.id, "run_id": handle.run_id})
        else:
            print(f"started {handle.id} (run {handle.run_id})")
        return 0
    if command == "list":
        runs = [
            run
            async for run in client.list_workflows(
                status=arguments.status, workflow_type=arguments.type, limit=arguments.limit
            )
        ]
        if arguments.json:
            print_json([dict(_description_fields(run)) for run in runs])
        else:
            print_table(
                ["workflow_id", "type", "status", "events", "started"],
                [
                    (run.workflow_id, run.workflow_type, run.status, run.history_length,
                     run.start_time.isoformat(timespec="seconds"))
                    for run in runs
                ],
            )  # fmt: skip
        return 0
    handle = client.get_workflow_handle(arguments.id)
    if command == "describe":
        fields = _description_fields(await handle.describe())
        print_json(dict(fields)) if arguments.json else print_fields(fields)
    elif command == "history":
        history: History = await handle.history()
        if arguments.json:
            print(history.to_json())
            return 0
        exported = json.loads(history.to_json())
        print_table(
            ["id", "time", "event", "details"],
            [
                (event["event_id"],
                 datetime.fromtimestamp(event["timestamp_ms"] / 1000, tz=timezone.utc)
                 .isoformat(timespec="milliseconds"),
                 event["type"], _summary(event["attributes"]))
                for event in exported["events"]
            ],
        )  # fmt: skip
    elif command == "signal":
        payload = _core_json(_input(arguments.input))
        checked = _check_signal(arguments.module, arguments.name, payload)
        await storage.signal_workflow(arguments.id, arguments.name, payload)
        print(f"signalled {arguments.id} with {arguments.name}")
        if not checked:
            print(
                "note: the payload was not checked against the signal's type; pass --module "
                "MODULE (the worker's) to check it before sending",
                file=sys.stderr,
            )
    elif command == "query":
        payload = _core_json(_input(arguments.input) or {})
        answer = await storage.query_workflow(
            arguments.id, arguments.name, payload, arguments.timeout
        )
        print_json(decode(answer))
    elif command == "cancel":
        await handle.cancel(arguments.reason)
        print(f"cancellation requested for {arguments.id}")
    elif command == "terminate":
        await handle.terminate(arguments.reason)
        print(f"terminated {arguments.id}")
    elif command == "result":
        print_json(await handle.result(timeout=arguments.timeout))
    return 0


def _check_signal(module: str | None, name: str, payload: bytes) -> bool:
    """Checks the payload against the signal class named ``name`` in ``module`` (the worker's),
    as the worker will decode it: a payload that does not decode would be dropped there.
    Returns False when there is no module to check against."""
    if module is None:
        return False
    signal_types = signal_classes(module)
    signal_type = signal_types.get(name)
    if signal_type is None:
        known = ", ".join(sorted(signal_types)) or "none"
        raise UserError(f"{module} declares no signal named {name!r} (it declares: {known})")
    try:
        _payload.decode(payload, signal_type)
    except PayloadDecodeError as error:
        raise UserError(f"not sent: the payload is not a {name}: {error}") from None
    return True


def _core_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def add_parser(commands: Any) -> None:
    workflow = commands.add_parser("workflow", help="start and inspect workflows")
    sub = workflow.add_subparsers(dest="workflow_command", required=True, metavar="COMMAND")
    start = sub.add_parser("start", help="start a workflow by its type name")
    start.add_argument("type", help="registered workflow type, e.g. checkout")
    start.add_argument("--id", required=True, help="workflow id")
    start.add_argument("--task-queue", required=True)
    start.add_argument("--input", help="the input as JSON")
    listing = sub.add_parser("list", help="list workflow runs")
    listing.add_argument(
        "--status",
        type=str.upper,
        choices=WORKFLOW_STATUSES,
        help=f"only runs of this status (any case): {', '.join(WORKFLOW_STATUSES)}",
        metavar="STATUS",
    )
    listing.add_argument("--type", help="only this workflow type")
    listing.add_argument("--limit", type=_count, help="at most this many runs, oldest first")
    for name, help_text in (
        ("describe", "status and facts of a workflow"),
        ("history", "the event history: a timeline, or the lossless export with --json"),
        ("result", "wait for the result"),
        ("cancel", "request cancellation"),
        ("terminate", "end the run at once"),
        ("signal", "send a signal"),
        ("query", "query a running worker"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("id", help="workflow id")
        if name in ("signal", "query"):
            command.add_argument("name", help="signal or query name (its class name)")
            command.add_argument("--input", help="the payload as JSON")
        if name == "signal":
            command.add_argument(
                "--module",
                help="MODULE[:ATTR] declaring the signal class (the worker's): the payload is "
                "checked against it before it is sent",
            )
        if name in ("cancel", "terminate"):
            command.add_argument("--reason", default="")
        if name in ("result", "query"):
            command.add_argument(
                "--timeout", type=float, default=None if name == "result" else 10.0
            )
    for command in sub.choices.values():
        command.add_argument("--json", action="store_true", help="machine-readable output")
