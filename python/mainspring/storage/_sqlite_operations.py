"""The storage contract as transactions on one SQLite connection: runs, their events, and
queries; the task states and helpers the other operation modules share
(`_sqlite_workflow_tasks`, `_sqlite_activity_tasks`).

The operations every workflow goes through are native (`NativeOperation`: crate
`mainspring-sqlite`, listed with their arguments where they belong below); the rarely used ones
are Python functions here. Each runs inside a transaction the caller opened (the group commit
of `_sqlite_batch`) and either does all of its work or raises, and then its work is rolled
back. The rules — what an outcome event sets in motion, when an attempt is retried — come from
the native core (`number_outcome`, `retry_delay_ms`), so these files only store what they
decide.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .. import _core
from ..errors import (
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ._sqlite_batch import Connection, NativeOperation, read_only

IDLE, QUEUED, LEASED = 0, 1, 2
ACTIVITY_QUEUED, ACTIVITY_RUNNING = 0, 1

RUN_COLUMNS = (
    "run_key, workflow_id, run_id, workflow_type, task_queue, status, history_length, "
    "started_ms, closed_ms, last_task_failure"
)


def _pack(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


def _failure_tuple(value: Any) -> Any:
    """A failure read back from msgpack (lists) as the nested tuples the core takes."""
    if value is None:
        return None
    message, error_type, non_retryable, details, stack, cause = value
    return (message, error_type, non_retryable, details, stack, _failure_tuple(cause))


# Runs and events.


@read_only
def current_run(db: Connection, workflow_id: str) -> tuple[Any, ...]:
    row = db.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ? ORDER BY run_key DESC LIMIT 1",
        (workflow_id,),
    ).fetchone()
    if row is None:
        raise WorkflowNotFoundError(f"workflow not found: {workflow_id}")
    return tuple(row)


def _running_run(db: Connection, workflow_id: str) -> tuple[Any, ...]:
    run = current_run(db, workflow_id)
    if run[5] != "RUNNING":
        raise WorkflowNotRunningError(f"workflow is not running: {workflow_id}")
    return run


def run_key_of(db: Connection, run_id: str) -> int:
    row = db.execute("SELECT run_key FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise WorkflowNotFoundError(f"run not found: {run_id}")
    run_key: int = row[0]
    return run_key


_APPEND_AND_WAKE = (
    "UPDATE runs SET history_length = history_length + 1, "
    f"task_ready_ms = CASE WHEN status = 'RUNNING' AND task_state = {IDLE} THEN ? "
    "ELSE task_ready_ms END, "
    f"task_state = CASE WHEN status = 'RUNNING' AND task_state = {IDLE} THEN {QUEUED} "
    "ELSE task_state END "
    "WHERE run_key = ? RETURNING history_length"
)


def _append_inbound(
    db: Connection,
    run_key: int,
    now: int,
    kind: str,
    args: tuple[Any, ...],
    wake: bool = False,
) -> tuple[int, bytes]:
    """Appends one event: `(its id, its encoded row)`. With `wake`, also queues the run's
    workflow task, unless one is already queued or leased (a leased task's commit sees the
    events it did not see and queues the next itself). The native operations' `append_and_wake`
    (`runs.rs`) does the same and may lease the task to its caller instead."""
    if wake:
        (event_id,) = db.execute(_APPEND_AND_WAKE, (now, run_key)).fetchone()
    else:
        (event_id,) = db.execute(
            "UPDATE runs SET history_length = history_length + 1 WHERE run_key = ? "
            "RETURNING history_length",
            (run_key,),
        ).fetchone()
    row = _core.encode_inbound_row(event_id, now, kind, args)
    db.execute(
        "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, ?, ?, ?)",
        (run_key, event_id, kind, row),
    )
    return event_id, row


def _drop_pending_work(db: Connection, run_key: int) -> None:
    """A closed run's activities and timers: no task of a closed run is handed out."""
    db.execute("DELETE FROM activities WHERE run_key = ?", (run_key,))
    db.execute("DELETE FROM timers WHERE run_key = ?", (run_key,))


# Native (crate mainspring-sqlite, `runs.rs`):
# start_workflow(workflow_id, run_id, workflow_type, task_queue, input, eager_lease_ms | None)
#     -> lease | None. Records the run with its first event and queues its first workflow
#     task, or leases it to the caller for `eager_lease_ms`.
start_workflow = NativeOperation("start_workflow")
# closing_event(run_id) -> bytes | None. A closed run's closing event, encoded as a history;
#     None while it runs.
closing_event = NativeOperation("closing_event", read_only=True)


def signal_workflow(
    db: Connection, now: int, workflow_id: str, signal_name: str, input: bytes
) -> None:
    run_key = _running_run(db, workflow_id)[0]
    _append_inbound(db, run_key, now, "WorkflowSignaled", (signal_name, input), wake=True)


def request_cancel_workflow(db: Connection, now: int, workflow_id: str, reason: str) -> None:
    run_key = _running_run(db, workflow_id)[0]
    (already,) = db.execute(
        "SELECT cancel_requested FROM runs WHERE run_key = ?", (run_key,)
    ).fetchone()
    if already:
        return
    db.execute("UPDATE runs SET cancel_requested = 1 WHERE run_key = ?", (run_key,))
    _append_inbound(db, run_key, now, "WorkflowCancelRequested", (reason,), wake=True)


def terminate_workflow(
    db: Connection, now: int, workflow_id: str, reason: str
) -> tuple[str, bytes]:
    """Returns the run id and its closing event (encoded as a history)."""
    run = _running_run(db, workflow_id)
    _, row = _append_inbound(db, run[0], now, "WorkflowTerminated", (reason,))
    db.execute(
        "UPDATE runs SET status = 'TERMINATED', closed_ms = ?, task_state = ? WHERE run_key = ?",
        (now, IDLE, run[0]),
    )
    _drop_pending_work(db, run[0])
    return str(run[2]), _core.join_rows([row])


# closing_events(run_ids) -> [(run_id, closing event), ...] for those that have closed.
closing_events = NativeOperation("closing_events", read_only=True)
# data_version() -> int. Moves whenever another connection (another process) commits.
data_version = NativeOperation("data_version", read_only=True)


@read_only
def read_history(db: Connection, now: int, run_id: str, from_event_id: int) -> bytes:
    rows = db.execute(
        "SELECT row FROM events WHERE run_key = ? AND event_id >= ? ORDER BY event_id",
        (run_key_of(db, run_id), from_event_id),
    ).fetchall()
    return _core.join_rows([row[0] for row in rows])


# Queries (answered by a worker, possibly in another process).


def submit_query(db: Connection, now: int, workflow_id: str, name: str, input: bytes) -> int:
    run = current_run(db, workflow_id)
    cursor = db.execute(
        "INSERT INTO queries (task_queue, workflow_id, run_id, name, input, created_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run[4], workflow_id, run[2], name, input, now),
    )
    return int(cursor.lastrowid or 0)


# take_query(task_queue) -> (query_id, workflow_id, run_id, name, input) | None, the query
#     marked taken.
take_query = NativeOperation("take_query")


def answer_query(
    db: Connection, now: int, query_id: int, result: bytes | None, error: str | None
) -> None:
    db.execute(
        "UPDATE queries SET state = 2, result = ?, error = ? WHERE query_id = ?",
        (result, error, query_id),
    )


def read_answer(db: Connection, now: int, query_id: int, give_up: bool) -> tuple[Any, ...] | None:
    """The answer if there is one (the row is then deleted); with `give_up`, deletes an
    unanswered query so no worker answers it late."""
    row = db.execute(
        "SELECT state, result, error FROM queries WHERE query_id = ?", (query_id,)
    ).fetchone()
    if row is not None and (row[0] == 2 or give_up):
        db.execute("DELETE FROM queries WHERE query_id = ?", (query_id,))
    return tuple(row) if row is not None and row[0] == 2 else None
