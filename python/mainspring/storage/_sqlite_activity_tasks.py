"""Activity-task operations on SQLite — poll, complete, fail, heartbeat, time out — and the
tick that applies every due deadline. See `_sqlite_operations` for the rules these
transactions follow."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from .. import _core
from ..errors import StaleTaskError
from ._sqlite_batch import read_only
from ._sqlite_operations import (
    ACTIVITY_QUEUED,
    ACTIVITY_RUNNING,
    LEASED,
    QUEUED,
    _append_and_wake,
    _append_inbound,
    _failure_tuple,
    _pack,
    _token,
)


def _attempt_deadline(
    now: int, start_to_close: int | None, schedule_to_close: int | None
) -> int | None:
    # Start-to-close falls back to schedule-to-close, as Temporal does.
    per_attempt = start_to_close if start_to_close is not None else schedule_to_close
    return None if per_attempt is None else now + per_attempt


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
) -> None:
    """Records an activity's final outcome (`extra` follows the scheduled event id; the
    attempt count is appended) and wakes its workflow."""
    row = db.execute(
        "DELETE FROM activities WHERE activity_id = ? "
        "RETURNING run_key, scheduled_event_id, attempt",
        (activity_id,),
    ).fetchone()
    if row is None:
        return
    run_key, scheduled_event_id, attempt = row
    _append_inbound(db, run_key, now, kind, (scheduled_event_id, *extra, attempt), wake=True)


def poll_activity_tasks(
    db: sqlite3.Connection, now: int, task_queue: str, max_tasks: int
) -> tuple[int, list[tuple[Any, ...]]]:
    """Applies due deadlines, then leases up to `max_tasks` ready attempts:
    `(deadlines applied, leases)`."""
    applied = tick(db, now)
    rows = db.execute(
        "SELECT a.activity_id, r.workflow_id, r.run_id, a.activity_type, a.input, a.attempt, "
        "a.heartbeat_details, a.scheduled_ms, a.start_to_close_ms, a.schedule_to_close_ms, "
        "a.close_deadline_ms, a.heartbeat_ms, a.scheduled_event_id "
        "FROM activities a JOIN runs r USING (run_key) "
        f"WHERE a.task_queue = ? AND a.state = {ACTIVITY_QUEUED} AND a.ready_ms <= ? "
        "ORDER BY a.ready_ms LIMIT ?",
        (task_queue, now, max_tasks),
    ).fetchall()
    leases = []
    for row in rows:
        (activity_id, workflow_id, run_id, activity_type, input, attempt, details, scheduled,
         start_to_close, schedule_to_close, close_deadline, heartbeat,
         scheduled_event_id) = row  # fmt: skip
        token = _token()
        attempt_deadline = _attempt_deadline(now, start_to_close, schedule_to_close)
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
                scheduled_event_id,
            )
        )  # fmt: skip
    return applied, leases


def finish_attempt(db: sqlite3.Connection, activity_id: int, token: int) -> tuple[int, int, int]:
    """Removes a running attempt that reported its result, fenced by its token: `(run key,
    scheduled event id, attempt)`; `StaleTaskError` if the attempt is over."""
    row = db.execute(
        "DELETE FROM activities WHERE activity_id = ? AND state = ? AND token = ? "
        "RETURNING run_key, scheduled_event_id, attempt",
        (activity_id, ACTIVITY_RUNNING, token),
    ).fetchone()
    if row is None:
        raise StaleTaskError(f"activity attempt {token} is over")
    return row[0], row[1], row[2]


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
    run's tasks go to `eager_queue` (eager dispatch: the caller advances it at once). Three
    statements: the fenced delete, the run's update and the event."""
    run_key, scheduled_event_id, attempt = finish_attempt(db, activity_id, token)
    _, _, lease = _append_and_wake(
        db,
        run_key,
        now,
        "ActivityCompleted",
        (scheduled_event_id, result, attempt),
        eager_queue,
        eager_lease_ms,
    )
    return lease


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
        f"UPDATE runs SET task_state = {QUEUED}, task_ready_ms = ? "
        f"WHERE task_state = {LEASED} AND task_deadline_ms < ?",
        (now, now),
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
        ("SELECT MIN(fire_ms) FROM timers", ()),
        (f"SELECT MIN(task_deadline_ms) FROM runs WHERE task_state = {LEASED}", ()),
        (
            f"SELECT MIN(task_ready_ms) FROM runs WHERE task_state = {QUEUED} "
            "AND task_ready_ms > ?",
            (now,),
        ),
        (
            f"SELECT MIN(ready_ms) FROM activities WHERE state = {ACTIVITY_QUEUED} "
            "AND ready_ms > ?",
            (now,),
        ),
        (
            "SELECT MIN(next_deadline_ms) FROM activities "
            "WHERE next_deadline_ms < 9223372036854775807",
            (),
        ),
    ]
    values = [db.execute(query, parameters).fetchone()[0] for query, parameters in candidates]
    present = [value for value in values if value is not None]
    return min(present) if present else None
