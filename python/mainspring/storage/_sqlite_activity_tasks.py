"""Activity-task operations on SQLite — poll, complete, fail, heartbeat, time out — and the
tick that applies every due deadline. See `_sqlite_operations` for the rules these
transactions follow."""

from __future__ import annotations

from typing import Any

import msgspec

from .. import _core
from ..errors import StaleTaskError
from ._sqlite_batch import Connection, NativeOperation
from ._sqlite_operations import (
    ACTIVITY_QUEUED,
    ACTIVITY_RUNNING,
    LEASED,
    QUEUED,
    _append_inbound,
    _failure_tuple,
    _pack,
)

_ACTIVITY_COLUMNS = (
    "activity_id, run_key, scheduled_event_id, attempt, policy, close_deadline_ms, "
    "last_failure, start_to_close_ms, schedule_to_close_ms, heartbeat_ms, schedule_to_start_ms"
)


def _activity(db: Connection, activity_id: int) -> tuple[Any, ...] | None:
    row = db.execute(
        f"SELECT {_ACTIVITY_COLUMNS} FROM activities WHERE activity_id = ?", (activity_id,)
    ).fetchone()
    return None if row is None else tuple(row)


def _running(db: Connection, activity_id: int, token: int) -> tuple[Any, ...]:
    row = db.execute(
        f"SELECT {_ACTIVITY_COLUMNS} FROM activities WHERE activity_id = ? AND state = ? "
        "AND token = ?",
        (activity_id, ACTIVITY_RUNNING, token),
    ).fetchone()
    if row is None:
        raise StaleTaskError(f"activity attempt {token} is over")
    return tuple(row)


def _resolve_activity(
    db: Connection,
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


# Native (crate mainspring-sqlite, `polls.rs`):
# poll_activity_tasks(task_queue, max_tasks, check_due) -> (due, [lease, ...]). Leases up to
#     `max_tasks` ready attempts; with `check_due`, nothing if a deadline is due.
poll_activity_tasks = NativeOperation("poll_activity_tasks")
# next_wakeup_ms() -> int | None. The earliest deadline, or ready time still ahead, that a
#     poll would act on.
next_wakeup_ms = NativeOperation("next_wakeup_ms", read_only=True)


# Native (crate mainspring-sqlite, `activity_tasks.rs`):
# complete_activity_task(activity_id, token, result, eager_queue, eager_lease_ms) -> lease |
#     None. Records the result (fenced by the attempt's token) and wakes the run's workflow
#     task; with `eager_queue`, leases that task to the caller if the run's tasks go there.
complete_activity_task = NativeOperation("complete_activity_task")


def fail_activity_task(
    db: Connection, now: int, activity_id: int, token: int, failure: tuple[Any, ...]
) -> None:
    row = _running(db, activity_id, token)
    _attempt_failed(db, now, row, failure, None)


def heartbeat_activity_task(
    db: Connection, now: int, activity_id: int, token: int, details: bytes
) -> None:
    row = _running(db, activity_id, token)
    heartbeat_ms = row[9]
    db.execute(
        "UPDATE activities SET heartbeat_details = ?, heartbeat_deadline_ms = ? "
        "WHERE activity_id = ?",
        (details, None if heartbeat_ms is None else now + heartbeat_ms, activity_id),
    )


def _attempt_failed(
    db: Connection,
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


def _time_out_attempt(db: Connection, now: int, activity_id: int, kind: str) -> None:
    row = _activity(db, activity_id)
    if row is None:
        return
    if row[5] is not None and row[5] <= now:
        # The whole activity is out of time, not just this attempt: say so.
        _time_out_activity(db, now, activity_id, "schedule_to_close")
        return
    failure = (f"activity {kind} timeout", "ActivityTimeout", False, b"null", "", None)
    _attempt_failed(db, now, row, failure, kind)


def _time_out_activity(db: Connection, now: int, activity_id: int, kind: str) -> None:
    row = _activity(db, activity_id)
    if row is None:
        return
    last_failure = None if row[6] is None else _failure_tuple(msgspec.msgpack.decode(row[6]))
    _resolve_activity(db, now, activity_id, "ActivityTimedOut", (kind, last_failure))


# Time.


def tick(db: Connection, now: int) -> int:
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
