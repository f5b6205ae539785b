"""The storage contract as transactions on one SQLite connection.

Each public function here runs inside a transaction the caller opened (the database thread's
group commit) and either does all of its work or raises, in which case its savepoint is rolled
back. The rules — what an outcome event sets in motion, when an attempt is retried — come from
the native core (`outcome_rows`, `retry_delay_ms`), so this file only stores what they decide.
"""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

import msgspec

from .. import _core
from ..errors import (
    StaleTaskError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from ._sqlite_batch import read_only

INBOUND_KINDS = (
    "WorkflowStarted",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityTimedOut",
    "ActivityCanceled",
    "TimerFired",
    "WorkflowSignaled",
    "WorkflowCancelRequested",
)
_INBOUND_SQL = ", ".join(f"'{kind}'" for kind in INBOUND_KINDS)
IDLE, QUEUED, LEASED = 0, 1, 2
ACTIVITY_QUEUED, ACTIVITY_RUNNING = 0, 1

RUN_COLUMNS = (
    "run_key, workflow_id, run_id, workflow_type, task_queue, status, history_length, "
    "started_ms, closed_ms, last_task_failure"
)


def _token() -> int:
    # Random 62-bit fencing tokens: unique across processes without a shared counter row.
    return secrets.randbits(62) + 1


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


def _append_inbound(
    db: sqlite3.Connection,
    run_key: int,
    now: int,
    kind: str,
    args: tuple[Any, ...],
    wake: bool = False,
) -> int:
    """Appends one event; with `wake`, also queues the run's workflow task in the same
    statement, unless one is already queued or leased (a leased task's completion looks for
    events it did not see and queues the next itself)."""
    (length,) = db.execute(
        "SELECT history_length FROM runs WHERE run_key = ?", (run_key,)
    ).fetchone()
    event_id = int(length) + 1
    row = _core.encode_inbound_row(event_id, now, kind, args)
    db.execute(
        "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, ?, ?, ?)",
        (run_key, event_id, kind, row),
    )
    if wake:
        idle_and_running = f"status = 'RUNNING' AND task_state = {IDLE}"
        db.execute(
            f"UPDATE runs SET history_length = ?, "
            f"task_ready_ms = CASE WHEN {idle_and_running} THEN ? ELSE task_ready_ms END, "
            f"task_state = CASE WHEN {idle_and_running} THEN {QUEUED} ELSE task_state END "
            "WHERE run_key = ?",
            (event_id, now, run_key),
        )
    else:
        db.execute("UPDATE runs SET history_length = ? WHERE run_key = ?", (event_id, run_key))
    return event_id


def close_run(db: sqlite3.Connection, run_key: int, status: str, now: int) -> None:
    """Closes a run and drops its pending work: no task of a closed run is handed out."""
    db.execute(
        "UPDATE runs SET status = ?, closed_ms = ?, task_state = ? WHERE run_key = ?",
        (status, now, IDLE, run_key),
    )
    db.execute("DELETE FROM activities WHERE run_key = ?", (run_key,))
    db.execute("DELETE FROM timers WHERE run_key = ?", (run_key,))


def start_workflow(
    db: sqlite3.Connection,
    now: int,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    task_queue: str,
    input: bytes,
) -> None:
    existing = db.execute(
        "SELECT status FROM runs WHERE workflow_id = ? ORDER BY run_key DESC LIMIT 1",
        (workflow_id,),
    ).fetchone()
    if existing is not None and existing[0] == "RUNNING":
        raise WorkflowAlreadyStartedError(f"workflow already started: {workflow_id}")
    cursor = db.execute(
        "INSERT INTO runs (workflow_id, run_id, workflow_type, task_queue, status, "
        "history_length, started_ms, task_state, task_ready_ms) "
        "VALUES (?, ?, ?, ?, 'RUNNING', 0, ?, ?, ?)",
        (workflow_id, run_id, workflow_type, task_queue, now, QUEUED, now),
    )
    run_key = int(cursor.lastrowid or 0)
    _append_inbound(
        db, run_key, now, "WorkflowStarted", (workflow_type, workflow_id, run_id, task_queue, input)
    )


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


def terminate_workflow(db: sqlite3.Connection, now: int, workflow_id: str, reason: str) -> str:
    run = _running_run(db, workflow_id)
    _append_inbound(db, run[0], now, "WorkflowTerminated", (reason,))
    close_run(db, run[0], "TERMINATED", now)
    return str(run[2])


@read_only
def read_history(db: sqlite3.Connection, now: int, run_id: str, from_event_id: int) -> bytes:
    rows = db.execute(
        "SELECT row FROM events WHERE run_key = ? AND event_id >= ? ORDER BY event_id",
        (run_key_of(db, run_id), from_event_id),
    ).fetchall()
    return _core.join_rows([row[0] for row in rows])


# Workflow tasks.


def poll_workflow_tasks(
    db: sqlite3.Connection, now: int, task_queue: str, lease_ms: int, max_tasks: int
) -> tuple[int, list[tuple[Any, ...]]]:
    """Applies due deadlines, then leases up to `max_tasks` ready tasks, oldest first:
    `(deadlines applied, leases)`. One transaction, one round trip."""
    applied = tick(db, now)
    return applied, _lease_workflow_tasks(
        db, now, "task_queue = ?", (task_queue,), lease_ms, max_tasks
    )


def _lease_workflow_tasks(
    db: sqlite3.Connection,
    now: int,
    where: str,
    parameters: tuple[Any, ...],
    lease_ms: int,
    max_tasks: int,
) -> list[tuple[Any, ...]]:
    rows = db.execute(
        "SELECT run_key, workflow_id, run_id, workflow_type, history_length, tail_start "
        f"FROM runs WHERE {where} AND task_state = ? AND task_ready_ms <= ? "
        "ORDER BY task_ready_ms LIMIT ?",
        (*parameters, QUEUED, now, max_tasks),
    ).fetchall()
    leases = []
    for run_key, workflow_id, run_id, workflow_type, length, tail_start in rows:
        token = _token()
        db.execute(
            "UPDATE runs SET task_state = ?, task_token = ?, task_deadline_ms = ? "
            "WHERE run_key = ?",
            (LEASED, token, now + lease_ms, run_key),
        )
        tail = db.execute(
            "SELECT row FROM events WHERE run_key = ? AND event_id >= ? ORDER BY event_id",
            (run_key, tail_start),
        ).fetchall()
        leases.append(
            (run_key, workflow_id, run_id, workflow_type, length, token, tail_start,
             _core.join_rows([row[0] for row in tail]))
        )  # fmt: skip
    return leases


def _check_lease(db: sqlite3.Connection, run_key: int, token: int, now: int) -> int:
    row = db.execute(
        "SELECT history_length FROM runs WHERE run_key = ? AND task_state = ? "
        "AND task_token = ? AND task_deadline_ms >= ?",
        (run_key, LEASED, token, now),
    ).fetchone()
    if row is None:
        raise StaleTaskError(f"workflow task {token} is no longer held by this worker")
    return int(row[0])


def complete_workflow_task(
    db: sqlite3.Connection,
    now: int,
    run_key: int,
    token: int,
    outcome: bytes | None,
    eager_queue: str | None = None,
    eager_slots: int = 0,
) -> tuple[bool, list[tuple[Any, ...]]]:
    """Commits the outcome, fenced by the lease. Returns whether the run closed and, when the
    caller has `eager_slots` free on `eager_queue`, the activity attempts the outcome scheduled
    there, already leased to it (eager execution: no separate poll, no second commit)."""
    closed = _commit_outcome(db, now, run_key, token, outcome)
    if closed or not eager_slots or eager_queue is None:
        return closed, []
    return False, _lease_activities(
        db, now, "a.task_queue = ? AND a.run_key = ?", (eager_queue, run_key), eager_slots
    )


def _commit_outcome(
    db: sqlite3.Connection, now: int, run_key: int, token: int, outcome: bytes | None
) -> bool:
    length = _check_lease(db, run_key, token, now)
    seen, rows = (length, []) if outcome is None else _core.outcome_rows(outcome, length + 1, now)
    if seen > length:
        raise StaleTaskError(f"task saw event {seen} but the history has {length}")
    # Events after what the task saw arrived while it ran (storages only ever append inbound
    # events outside a task's own commit): the run needs another task at once.
    unseen = seen < length
    db.execute(
        "UPDATE runs SET task_state = ?, task_ready_ms = ?, task_failures = 0, "
        "last_task_failure = NULL, history_length = ?, tail_start = ? WHERE run_key = ?",
        (QUEUED if unseen else IDLE, now, length + len(rows), seen + 1, run_key),
    )
    if not rows:
        return False
    db.executemany(
        "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, ?, ?, ?)",
        [(run_key, event_id, kind, row) for event_id, kind, row, _ in rows],
    )
    # All of the task's events are in before any effect runs: an effect that records an
    # event itself (a cancelled activity) must not split the task's command events, and
    # nothing may follow a terminal event.
    closes = any(effect is not None and effect[0] == "close" for *_, effect in rows)
    for event_id, _, _, effect in rows:
        if effect is not None and not (closes and effect[0] == "cancel_activity"):
            _apply_effect(db, now, run_key, event_id, effect)
    return closes


def _apply_effect(
    db: sqlite3.Connection, now: int, run_key: int, event_id: int, effect: tuple[Any, ...]
) -> None:
    kind = effect[0]
    if kind == "activity":
        (
            _,
            activity_type,
            input,
            task_queue,
            to_close,
            to_start,
            start_to_close,
            heartbeat,
            policy,
        ) = effect
        db.execute(
            "INSERT INTO activities (run_key, scheduled_event_id, task_queue, activity_type, "
            "input, policy, schedule_to_close_ms, schedule_to_start_ms, start_to_close_ms, "
            "heartbeat_ms, attempt, scheduled_ms, state, ready_ms, start_deadline_ms, "
            "close_deadline_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (
                run_key, event_id, task_queue, activity_type, input, _pack(policy), to_close,
                to_start, start_to_close, heartbeat, now, ACTIVITY_QUEUED, now,
                None if to_start is None else now + to_start,
                None if to_close is None else now + to_close,
            ),
        )  # fmt: skip
    elif kind == "timer":
        db.execute(
            "INSERT INTO timers (run_key, started_event_id, fire_ms) VALUES (?, ?, ?)",
            (run_key, event_id, now + effect[1]),
        )
    elif kind == "cancel_timer":
        db.execute(
            "DELETE FROM timers WHERE run_key = ? AND started_event_id = ?", (run_key, effect[1])
        )
    elif kind == "cancel_activity":
        row = db.execute(
            "SELECT activity_id FROM activities WHERE run_key = ? AND scheduled_event_id = ?",
            (run_key, effect[1]),
        ).fetchone()
        if row is not None:
            # Try-cancel, as Temporal's default: resolved at once; the attempt learns it
            # through its next heartbeat and its late result is refused.
            _resolve_activity(db, now, row[0], "ActivityCanceled", ())
    elif kind == "close":
        close_run(db, run_key, effect[1], now)


def fail_workflow_task(
    db: sqlite3.Connection,
    now: int,
    run_key: int,
    token: int,
    message: str,
    retry_initial_ms: int,
    retry_maximum_ms: int,
) -> None:
    _check_lease(db, run_key, token, now)
    (failures,) = db.execute(
        "SELECT task_failures FROM runs WHERE run_key = ?", (run_key,)
    ).fetchone()
    delay = min(retry_initial_ms * (2 ** min(failures, 32)), retry_maximum_ms)
    db.execute(
        "UPDATE runs SET task_state = ?, task_ready_ms = ?, task_failures = ?, "
        "last_task_failure = ? WHERE run_key = ?",
        (QUEUED, now + delay, failures + 1, message, run_key),
    )


# Activity tasks.

_ACTIVITY_COLUMNS = (
    "activity_id, run_key, scheduled_event_id, attempt, policy, close_deadline_ms, "
    "last_failure, start_to_close_ms, schedule_to_close_ms, heartbeat_ms, schedule_to_start_ms"
)


def _activity(db: sqlite3.Connection, activity_id: int) -> tuple[Any, ...] | None:
    row = db.execute(
        f"SELECT {_ACTIVITY_COLUMNS} FROM activities WHERE activity_id = ?", (activity_id,)
    ).fetchone()
    return None if row is None else tuple(row)


def _running(db: sqlite3.Connection, activity_id: int, token: int) -> tuple[Any, ...]:
    row = db.execute(
        f"SELECT {_ACTIVITY_COLUMNS} FROM activities WHERE activity_id = ? AND state = ? "
        "AND token = ?",
        (activity_id, ACTIVITY_RUNNING, token),
    ).fetchone()
    if row is None:
        raise StaleTaskError(f"activity attempt {token} is over")
    return tuple(row)


def _resolve_activity(
    db: sqlite3.Connection,
    now: int,
    activity_id: int,
    kind: str,
    extra: tuple[Any, ...],
    row: tuple[Any, ...] | None = None,
) -> None:
    """Records an activity's final outcome (`extra` follows the scheduled event id; the
    attempt count is appended) and wakes its workflow. `row`: the activity's row, if the
    caller has just read it."""
    row = row if row is not None else _activity(db, activity_id)
    if row is None:
        return
    run_key, scheduled_event_id, attempt = row[1], row[2], row[3]
    db.execute("DELETE FROM activities WHERE activity_id = ?", (activity_id,))
    _append_inbound(db, run_key, now, kind, (scheduled_event_id, *extra, attempt), wake=True)


def poll_activity_tasks(
    db: sqlite3.Connection, now: int, task_queue: str, max_tasks: int
) -> tuple[int, list[tuple[Any, ...]]]:
    """Applies due deadlines, then leases up to `max_tasks` ready attempts:
    `(deadlines applied, leases)`."""
    applied = tick(db, now)
    return applied, _lease_activities(db, now, "a.task_queue = ?", (task_queue,), max_tasks)


def _lease_activities(
    db: sqlite3.Connection, now: int, where: str, parameters: tuple[Any, ...], max_tasks: int
) -> list[tuple[Any, ...]]:
    rows = db.execute(
        "SELECT a.activity_id, r.workflow_id, r.run_id, a.activity_type, a.input, a.attempt, "
        "a.heartbeat_details, a.scheduled_ms, a.start_to_close_ms, a.schedule_to_close_ms, "
        "a.close_deadline_ms, a.heartbeat_ms FROM activities a JOIN runs r USING (run_key) "
        f"WHERE {where} AND a.state = ? AND a.ready_ms <= ? ORDER BY a.ready_ms LIMIT ?",
        (*parameters, ACTIVITY_QUEUED, now, max_tasks),
    ).fetchall()
    leases = []
    for row in rows:
        (activity_id, workflow_id, run_id, activity_type, input, attempt, details, scheduled,
         start_to_close, schedule_to_close, close_deadline, heartbeat) = row  # fmt: skip
        token = _token()
        # Start-to-close falls back to schedule-to-close, as Temporal does.
        per_attempt = start_to_close if start_to_close is not None else schedule_to_close
        attempt_deadline = None if per_attempt is None else now + per_attempt
        deadlines = [d for d in (attempt_deadline, close_deadline) if d is not None]
        db.execute(
            "UPDATE activities SET state = ?, token = ?, started_ms = ?, "
            "attempt_deadline_ms = ?, heartbeat_deadline_ms = ?, start_deadline_ms = NULL "
            "WHERE activity_id = ?",
            (
                ACTIVITY_RUNNING, token, now, attempt_deadline,
                None if heartbeat is None else now + heartbeat, activity_id,
            ),
        )  # fmt: skip
        leases.append(
            (
                activity_id, token, workflow_id, run_id, activity_type, input, attempt, details,
                scheduled, now, min(deadlines) if deadlines else None, heartbeat,
            )
        )  # fmt: skip
    return leases


def complete_activity_task(
    db: sqlite3.Connection,
    now: int,
    activity_id: int,
    token: int,
    result: bytes,
    eager_queue: str | None = None,
    eager_lease_ms: int = 0,
) -> tuple[Any, ...] | None:
    """Records the result. With `eager_queue`, also leases the workflow task it woke, if that
    run's tasks go to `eager_queue` (eager dispatch: the caller advances it at once)."""
    row = _running(db, activity_id, token)
    _resolve_activity(db, now, activity_id, "ActivityCompleted", (result,), row)
    if eager_queue is None:
        return None
    leases = _lease_workflow_tasks(
        db, now, "task_queue = ? AND run_key = ?", (eager_queue, row[1]), eager_lease_ms, 1
    )
    return leases[0] if leases else None


def fail_activity_task(
    db: sqlite3.Connection, now: int, activity_id: int, token: int, failure: tuple[Any, ...]
) -> None:
    row = _running(db, activity_id, token)
    _attempt_failed(db, now, row, failure, None)


def heartbeat_activity_task(
    db: sqlite3.Connection, now: int, activity_id: int, token: int, details: bytes
) -> None:
    row = _running(db, activity_id, token)
    heartbeat_ms = row[9]
    db.execute(
        "UPDATE activities SET heartbeat_details = ?, heartbeat_deadline_ms = ? "
        "WHERE activity_id = ?",
        (details, None if heartbeat_ms is None else now + heartbeat_ms, activity_id),
    )


def _attempt_failed(
    db: sqlite3.Connection,
    now: int,
    row: tuple[Any, ...],
    failure: tuple[Any, ...],
    timeout_type: str | None,
) -> None:
    activity_id, attempt, policy, close_deadline, to_start = row[0], row[3], row[4], row[5], row[10]
    policy_tuple: Any = tuple(msgspec.msgpack.decode(policy))
    delay = _core.retry_delay_ms(
        policy_tuple,
        failure[1],
        failure[2],
        attempt,
        now,
        close_deadline,
    )
    if delay is None:
        if timeout_type is None:
            _resolve_activity(db, now, activity_id, "ActivityFailed", (failure,))
        else:
            _resolve_activity(db, now, activity_id, "ActivityTimedOut", (timeout_type, failure))
        return
    ready = now + delay
    db.execute(
        "UPDATE activities SET attempt = attempt + 1, state = ?, ready_ms = ?, token = NULL, "
        "last_failure = ?, attempt_deadline_ms = NULL, heartbeat_deadline_ms = NULL, "
        "start_deadline_ms = ? WHERE activity_id = ?",
        (
            ACTIVITY_QUEUED, ready, _pack(failure),
            None if to_start is None else ready + to_start, activity_id,
        ),
    )  # fmt: skip


def _time_out_attempt(db: sqlite3.Connection, now: int, activity_id: int, kind: str) -> None:
    row = _activity(db, activity_id)
    if row is None:
        return
    if row[5] is not None and row[5] <= now:
        # The whole activity is out of time, not just this attempt: say so.
        _time_out_activity(db, now, activity_id, "schedule_to_close")
        return
    failure = (f"activity {kind} timeout", "ActivityTimeout", False, b"null", "", None)
    _attempt_failed(db, now, row, failure, kind)


def _time_out_activity(db: sqlite3.Connection, now: int, activity_id: int, kind: str) -> None:
    row = _activity(db, activity_id)
    if row is None:
        return
    last_failure = None if row[6] is None else _failure_tuple(msgspec.msgpack.decode(row[6]))
    _resolve_activity(db, now, activity_id, "ActivityTimedOut", (kind, last_failure))


# Time.


def tick(db: sqlite3.Connection, now: int) -> int:
    """Applies every deadline at or before `now`; returns how many took effect."""
    applied = 0
    for run_key, started_event_id in db.execute(
        "SELECT run_key, started_event_id FROM timers WHERE fire_ms <= ? ORDER BY fire_ms",
        (now,),
    ).fetchall():
        db.execute(
            "DELETE FROM timers WHERE run_key = ? AND started_event_id = ?",
            (run_key, started_event_id),
        )
        _append_inbound(db, run_key, now, "TimerFired", (started_event_id,), wake=True)
        applied += 1
    # Workflow task leases that lapsed: hand the task to another worker.
    applied += db.execute(
        "UPDATE runs SET task_state = ?, task_ready_ms = ? "
        "WHERE task_state = ? AND task_deadline_ms < ?",
        (QUEUED, now, LEASED, now),
    ).rowcount
    for activity_id, state, attempt, heartbeat, start, close in db.execute(
        "SELECT activity_id, state, attempt_deadline_ms, heartbeat_deadline_ms, "
        "start_deadline_ms, close_deadline_ms FROM activities WHERE next_deadline_ms <= ? "
        "ORDER BY next_deadline_ms",
        (now,),
    ).fetchall():
        if close is not None and close <= now:
            _time_out_activity(db, now, activity_id, "schedule_to_close")
        elif state == ACTIVITY_QUEUED and start is not None and start <= now:
            _time_out_activity(db, now, activity_id, "schedule_to_start")
        elif state == ACTIVITY_RUNNING and attempt is not None and attempt <= now:
            _time_out_attempt(db, now, activity_id, "start_to_close")
        elif state == ACTIVITY_RUNNING and heartbeat is not None and heartbeat <= now:
            _time_out_attempt(db, now, activity_id, "heartbeat")
        else:
            continue
        applied += 1
    return applied


@read_only
def next_wakeup_ms(db: sqlite3.Connection, now: int) -> int | None:
    """The earliest deadline, or ready time still ahead, that a poll would act on."""
    candidates = [
        "SELECT MIN(fire_ms) FROM timers",
        "SELECT MIN(task_deadline_ms) FROM runs WHERE task_state = 2",
        f"SELECT MIN(task_ready_ms) FROM runs WHERE task_state = 1 AND task_ready_ms > {now}",
        f"SELECT MIN(ready_ms) FROM activities WHERE state = 0 AND ready_ms > {now}",
        "SELECT MIN(next_deadline_ms) FROM activities WHERE next_deadline_ms < 9223372036854775807",
    ]
    values = [db.execute(query).fetchone()[0] for query in candidates]
    present = [value for value in values if value is not None]
    return min(present) if present else None


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
