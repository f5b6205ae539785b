"""The storage contract as transactions on one SQLite connection: runs, their events, and
queries; the task states and helpers the other operation modules share
(`_sqlite_workflow_tasks`, `_sqlite_activity_tasks`).

Each public function in these modules runs inside a transaction the caller opened (the group
commit of `_sqlite_batch`) and either does all of its work or raises, and then its work is
rolled back. The rules — what an outcome event sets in motion, when an attempt is retried —
come from the native core (`outcome_rows`, `retry_delay_ms`), so these files only store what
they decide.
"""

from __future__ import annotations

import os
import random
import secrets
import sqlite3
from typing import Any

import msgspec

from .. import _core
from ..errors import (
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ._sqlite_batch import read_only

IDLE, QUEUED, LEASED = 0, 1, 2
ACTIVITY_QUEUED, ACTIVITY_RUNNING = 0, 1

RUN_COLUMNS = (
    "run_key, workflow_id, run_id, workflow_type, task_queue, status, history_length, "
    "started_ms, closed_ms, last_task_failure"
)


# Random 62-bit fencing tokens: unique across processes without a shared counter row. Drawn
# from a generator seeded by the OS (one system call per process, not per token), and
# reseeded in a forked child, which would otherwise draw its parent's sequence.
_tokens = random.Random(secrets.randbits(128))
os.register_at_fork(after_in_child=lambda: _tokens.seed(secrets.randbits(128)))


def _token() -> int:
    return _tokens.getrandbits(62) + 1


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
def current_run(db: sqlite3.Connection, workflow_id: str) -> tuple[Any, ...]:
    row = db.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ? ORDER BY run_key DESC LIMIT 1",
        (workflow_id,),
    ).fetchone()
    if row is None:
        raise WorkflowNotFoundError(f"workflow not found: {workflow_id}")
    return tuple(row)


def _running_run(db: sqlite3.Connection, workflow_id: str) -> tuple[Any, ...]:
    run = current_run(db, workflow_id)
    if run[5] != "RUNNING":
        raise WorkflowNotRunningError(f"workflow is not running: {workflow_id}")
    return run


def run_key_of(db: sqlite3.Connection, run_id: str) -> int:
    row = db.execute("SELECT run_key FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise WorkflowNotFoundError(f"run not found: {run_id}")
    run_key: int = row[0]
    return run_key


# A run whose workflow task a new event may queue: running, no task queued or leased.
_IDLE_RUN = f"status = 'RUNNING' AND task_state = {IDLE}"
# A run whose workflow task a new event may lease at once to the worker that caused the event
# (eager dispatch): running, its tasks on :queue, no task leased nor one waiting for a retry.
_EAGER_RUN = (
    f"status = 'RUNNING' AND task_queue = :queue AND (task_state = {IDLE} "
    f"OR (task_state = {QUEUED} AND task_ready_ms <= :now))"
)
_APPEND_AND_WAKE = (
    "UPDATE runs SET history_length = history_length + 1, "
    f"task_token = CASE WHEN {_EAGER_RUN} THEN :token ELSE task_token END, "
    f"task_deadline_ms = CASE WHEN {_EAGER_RUN} THEN :deadline ELSE task_deadline_ms END, "
    f"task_ready_ms = CASE WHEN {_IDLE_RUN} THEN :now ELSE task_ready_ms END, "
    f"task_state = CASE WHEN {_EAGER_RUN} THEN {LEASED} WHEN {_IDLE_RUN} THEN {QUEUED} "
    "ELSE task_state END "
    "WHERE run_key = :run_key "
    "RETURNING history_length, task_token, tail_start, workflow_id, run_id, workflow_type"
)


def _append_inbound(
    db: sqlite3.Connection,
    run_key: int,
    now: int,
    kind: str,
    args: tuple[Any, ...],
    wake: bool = False,
) -> tuple[int, bytes]:
    """Appends one event: `(its id, its encoded row)`. With `wake`, also queues the run's
    workflow task, unless one is already queued or leased (a leased task's commit sees the
    events it did not see and queues the next itself)."""
    if wake:
        event_id, row, _ = _append_and_wake(db, run_key, now, kind, args, None, 0)
        return event_id, row
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


def _append_and_wake(
    db: sqlite3.Connection,
    run_key: int,
    now: int,
    kind: str,
    args: tuple[Any, ...],
    eager_queue: str | None,
    lease_ms: int,
) -> tuple[int, bytes, tuple[Any, ...] | None]:
    """Appends one event and wakes the run's workflow task; with `eager_queue`, leases that
    task to the caller when the run's tasks go there (see `_EAGER_RUN`): `(event id, encoded
    row, lease or None)`. Two statements in the common case."""
    token = _token()
    event_id, task_token, tail_start, workflow_id, run_id, workflow_type = db.execute(
        _APPEND_AND_WAKE,
        {"queue": eager_queue, "now": now, "token": token, "deadline": now + lease_ms,
         "run_key": run_key},
    ).fetchone()  # fmt: skip
    row = _core.encode_inbound_row(event_id, now, kind, args)
    db.execute(
        "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, ?, ?, ?)",
        (run_key, event_id, kind, row),
    )
    if eager_queue is None or task_token != token:
        return event_id, row, None
    tail = _event_rows(db, run_key, tail_start, event_id) if tail_start < event_id else [row]
    lease = (run_key, workflow_id, run_id, workflow_type, event_id, token, tail_start,
             _core.join_rows(tail))  # fmt: skip
    return event_id, row, lease


def _event_rows(
    db: sqlite3.Connection, run_key: int, from_event_id: int, to_event_id: int
) -> list[bytes]:
    return [
        row
        for (row,) in db.execute(
            "SELECT row FROM events WHERE run_key = ? AND event_id BETWEEN ? AND ? "
            "ORDER BY event_id",
            (run_key, from_event_id, to_event_id),
        )
    ]


def _drop_pending_work(db: sqlite3.Connection, run_key: int) -> None:
    """A closed run's activities and timers: no task of a closed run is handed out."""
    db.execute("DELETE FROM activities WHERE run_key = ?", (run_key,))
    db.execute("DELETE FROM timers WHERE run_key = ?", (run_key,))


def refuse_running_duplicate(db: sqlite3.Connection, workflow_id: str) -> None:
    """Workflow ids are unique among running runs (a closed one's id may be reused)."""
    existing = db.execute(
        "SELECT status FROM runs WHERE workflow_id = ? ORDER BY run_key DESC LIMIT 1",
        (workflow_id,),
    ).fetchone()
    if existing is not None and existing[0] == "RUNNING":
        raise WorkflowAlreadyStartedError(f"workflow already started: {workflow_id}")


def start_workflow(
    db: sqlite3.Connection,
    now: int,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    task_queue: str,
    input: bytes,
    eager_lease_ms: int | None = None,
) -> tuple[Any, ...] | None:
    """Records the run with its first event and queues its first workflow task, or, with
    `eager_lease_ms`, leases that task to the caller and returns the lease."""
    refuse_running_duplicate(db, workflow_id)
    token = None if eager_lease_ms is None else _token()
    # The run starts with its first event already counted: two statements, not three.
    cursor = db.execute(
        "INSERT INTO runs (workflow_id, run_id, workflow_type, task_queue, status, "
        "history_length, started_ms, task_state, task_ready_ms, task_token, task_deadline_ms) "
        "VALUES (?, ?, ?, ?, 'RUNNING', 1, ?, ?, ?, ?, ?)",
        (
            workflow_id, run_id, workflow_type, task_queue, now,
            QUEUED if token is None else LEASED, now, token,
            None if eager_lease_ms is None else now + eager_lease_ms,
        ),
    )  # fmt: skip
    kind = "WorkflowStarted"
    row = _core.encode_inbound_row(
        1, now, kind, (workflow_type, workflow_id, run_id, task_queue, input)
    )
    db.execute(
        "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, 1, ?, ?)",
        (cursor.lastrowid, kind, row),
    )
    if token is None:
        return None
    return (cursor.lastrowid, workflow_id, run_id, workflow_type, 1, token, 1,
            _core.join_rows([row]))  # fmt: skip


def signal_workflow(
    db: sqlite3.Connection, now: int, workflow_id: str, signal_name: str, input: bytes
) -> None:
    run_key = _running_run(db, workflow_id)[0]
    _append_inbound(db, run_key, now, "WorkflowSignaled", (signal_name, input), wake=True)


def request_cancel_workflow(
    db: sqlite3.Connection, now: int, workflow_id: str, reason: str
) -> None:
    run_key = _running_run(db, workflow_id)[0]
    (already,) = db.execute(
        "SELECT cancel_requested FROM runs WHERE run_key = ?", (run_key,)
    ).fetchone()
    if already:
        return
    db.execute("UPDATE runs SET cancel_requested = 1 WHERE run_key = ?", (run_key,))
    _append_inbound(db, run_key, now, "WorkflowCancelRequested", (reason,), wake=True)


def terminate_workflow(
    db: sqlite3.Connection, now: int, workflow_id: str, reason: str
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


@read_only
def closing_event(db: sqlite3.Connection, now: int, run_id: str) -> bytes | None:
    """A closed run's last event (the one that closed it), encoded as a history; None while
    the run runs."""
    row = db.execute(
        "SELECT r.status, e.row FROM runs r LEFT JOIN events e "
        "ON e.run_key = r.run_key AND e.event_id = r.history_length WHERE r.run_id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise WorkflowNotFoundError(f"run not found: {run_id}")
    return None if row[0] == "RUNNING" else _core.join_rows([row[1]])


@read_only
def closing_events(db: sqlite3.Connection, now: int, run_ids: list[str]) -> list[tuple[str, bytes]]:
    """`(run id, closing event)` for those of `run_ids` that have closed."""
    closed = []
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        closed += [
            (run_id, _core.join_rows([row]))
            for run_id, row in db.execute(
                "SELECT r.run_id, e.row FROM runs r JOIN events e "
                "ON e.run_key = r.run_key AND e.event_id = r.history_length "
                f"WHERE r.status != 'RUNNING' AND r.run_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
        ]
    return closed


@read_only
def data_version(db: sqlite3.Connection, now: int) -> int:
    """Moves whenever another connection (another process) commits to the file."""
    (version,) = db.execute("PRAGMA data_version").fetchone()
    return int(version)


@read_only
def read_history(db: sqlite3.Connection, now: int, run_id: str, from_event_id: int) -> bytes:
    rows = db.execute(
        "SELECT row FROM events WHERE run_key = ? AND event_id >= ? ORDER BY event_id",
        (run_key_of(db, run_id), from_event_id),
    ).fetchall()
    return _core.join_rows([row[0] for row in rows])


# Queries (answered by a worker, possibly in another process).


def submit_query(
    db: sqlite3.Connection, now: int, workflow_id: str, name: str, input: bytes
) -> int:
    run = current_run(db, workflow_id)
    cursor = db.execute(
        "INSERT INTO queries (task_queue, workflow_id, run_id, name, input, created_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run[4], workflow_id, run[2], name, input, now),
    )
    return int(cursor.lastrowid or 0)


def take_query(db: sqlite3.Connection, now: int, task_queue: str) -> tuple[Any, ...] | None:
    row = db.execute(
        "SELECT query_id, workflow_id, run_id, name, input FROM queries "
        "WHERE task_queue = ? AND state = 0 ORDER BY query_id LIMIT 1",
        (task_queue,),
    ).fetchone()
    if row is None:
        return None
    db.execute("UPDATE queries SET state = 1 WHERE query_id = ?", (row[0],))
    return tuple(row)


def answer_query(
    db: sqlite3.Connection, now: int, query_id: int, result: bytes | None, error: str | None
) -> None:
    db.execute(
        "UPDATE queries SET state = 2, result = ?, error = ? WHERE query_id = ?",
        (result, error, query_id),
    )


def read_answer(
    db: sqlite3.Connection, now: int, query_id: int, give_up: bool
) -> tuple[Any, ...] | None:
    """The answer if there is one (the row is then deleted); with `give_up`, deletes an
    unanswered query so no worker answers it late."""
    row = db.execute(
        "SELECT state, result, error FROM queries WHERE query_id = ?", (query_id,)
    ).fetchone()
    if row is not None and (row[0] == 2 or give_up):
        db.execute("DELETE FROM queries WHERE query_id = ?", (query_id,))
    return tuple(row) if row is not None and row[0] == 2 else None
