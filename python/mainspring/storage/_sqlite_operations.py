"""The storage contract as transactions on one SQLite connection.

Each public function here runs inside a transaction the caller opened (the database thread's
group commit) and either does all of its work or raises, in which case its savepoint is rolled
back. The rules — what an outcome event sets in motion, when an attempt is retried — come from
the native core (`outcome_rows`, `retry_delay_ms`), so this file only stores what they decide.
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
    existing = db.execute(
        "SELECT status FROM runs WHERE workflow_id = ? ORDER BY run_key DESC LIMIT 1",
        (workflow_id,),
    ).fetchone()
    if existing is not None and existing[0] == "RUNNING":
        raise WorkflowAlreadyStartedError(f"workflow already started: {workflow_id}")
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


# Workflow tasks.


def poll_workflow_tasks(
    db: sqlite3.Connection, now: int, task_queue: str, lease_ms: int, max_tasks: int
) -> tuple[int, list[tuple[Any, ...]]]:
    """Applies due deadlines, then leases up to `max_tasks` ready tasks, oldest first:
    `(deadlines applied, leases)`. One transaction, one round trip."""
    applied = tick(db, now)
    rows = db.execute(
        "SELECT run_key, workflow_id, run_id, workflow_type, history_length, tail_start "
        # The state is spelled out, not bound: only then may SQLite use the partial index.
        f"FROM runs WHERE task_queue = ? AND task_state = {QUEUED} AND task_ready_ms <= ? "
        "ORDER BY task_ready_ms LIMIT ?",
        (task_queue, now, max_tasks),
    ).fetchall()
    leases = []
    for run_key, workflow_id, run_id, workflow_type, length, tail_start in rows:
        token = _token()
        db.execute(
            "UPDATE runs SET task_state = ?, task_token = ?, task_deadline_ms = ? "
            "WHERE run_key = ?",
            (LEASED, token, now + lease_ms, run_key),
        )
        tail = _event_rows(db, run_key, tail_start, length)
        leases.append(
            (run_key, workflow_id, run_id, workflow_type, length, token, tail_start,
             _core.join_rows(tail))
        )  # fmt: skip
    return applied, leases


def _check_lease(db: sqlite3.Connection, run_key: int, token: int, now: int) -> int:
    row = db.execute(
        "SELECT history_length FROM runs WHERE run_key = ? AND task_state = ? "
        "AND task_token = ? AND task_deadline_ms >= ?",
        (run_key, LEASED, token, now),
    ).fetchone()
    if row is None:
        raise StaleTaskError(f"workflow task {token} is no longer held by this worker")
    return int(row[0])


def _commit_outcome_statement(guard: str) -> str:
    return (
        "UPDATE runs SET history_length = history_length + :added, "
        # Events after what the task saw arrived while it ran (storages only append inbound
        # events outside a task's own commit): the run needs another task at once.
        f"task_state = CASE WHEN :status IS NULL AND history_length > coalesce(:seen, "
        f"history_length) THEN {QUEUED} ELSE {IDLE} END, "
        "task_ready_ms = :now, task_failures = 0, last_task_failure = NULL, "
        "tail_start = coalesce(:seen, history_length) + 1, status = coalesce(:status, status), "
        "closed_ms = CASE WHEN :status IS NULL THEN closed_ms ELSE :now END "
        f"WHERE run_key = :run_key AND {guard} "
        "RETURNING history_length, workflow_id, run_id"
    )


# A leased task's commit: fenced by its lease.
_COMMIT_LEASED_OUTCOME = _commit_outcome_statement(
    f"task_state = {LEASED} AND task_token = :token AND task_deadline_ms >= :now"
)
# A fused commit (an activity result and the task it woke): no lease was taken, so it is
# guarded by the history length the worker's instance has seen, on a run no task holds.
_COMMIT_FUSED_OUTCOME = _commit_outcome_statement(
    f"status = 'RUNNING' AND task_state = {IDLE} AND history_length = :expected"
)

# What a commit returns: (closing event or None, eager activity leases, whether pollers have
# new work, the rows it appended, the history length after it).
Committed = tuple[bytes | None, list[tuple[Any, ...]], bool, list[bytes], int]


def complete_workflow_task(
    db: sqlite3.Connection,
    now: int,
    run_key: int,
    token: int,
    outcome: bytes | None,
    leased_length: int,
    eager_queue: str | None = None,
    eager_slots: int = 0,
) -> Committed:
    """Commits the outcome, fenced by the lease (see `Committed`). When the caller has
    `eager_slots` free on `eager_queue`, the activity attempts the outcome schedules there are
    inserted already leased to it (eager execution: no poll, no second commit).

    The outcome's events are numbered from `leased_length` + 1 first (the history rarely grows
    while a task runs, and then they are numbered again), so the lease check, the history
    length and the run's new state are one statement."""
    seen: int | None = None
    rows: list[tuple[Any, ...]] = []
    if outcome is not None:
        seen, rows = _core.outcome_rows(outcome, leased_length + 1, now)
    returned = _update_run(db, _COMMIT_LEASED_OUTCOME, now, run_key, seen, rows, token=token)
    if returned is None:
        raise StaleTaskError(f"workflow task {token} is no longer held by this worker")
    new_length, workflow_id, run_id = returned
    length = new_length - len(rows)
    if seen is not None and seen > length:
        raise StaleTaskError(f"task saw event {seen} but the history has {length}")
    if length != leased_length and outcome is not None:
        _, rows = _core.outcome_rows(outcome, length + 1, now)
    # Events that arrived while the task ran queued the run's next task.
    unseen = seen is not None and seen < length
    return _store_outcome(
        db, now, run_key, rows, new_length, unseen, workflow_id, run_id, eager_queue, eager_slots
    )


def complete_activity_with_workflow_task(
    db: sqlite3.Connection,
    now: int,
    activity_id: int,
    token: int,
    result: bytes,
    result_row: bytes,
    expected_length: int,
    outcome: bytes,
    eager_queue: str | None = None,
    eager_slots: int = 0,
) -> Committed | None:
    """Records an activity's `result` (`result_row`: its ActivityCompleted event, numbered
    `expected_length` + 1, as the caller encoded it for its instance) together with the
    outcome of the workflow task it woke, which the caller ran on its cached instance before
    anything was committed: one commit where there were two. Guarded by the history length:
    if the run moved on meanwhile (a signal, a timer, another worker), only the result is
    recorded, the way `complete_activity_task` does, and None is returned (the caller's
    instance ran ahead of the history and must be dropped)."""
    deleted = db.execute(
        "DELETE FROM activities WHERE activity_id = ? AND state = ? AND token = ? "
        "RETURNING run_key, scheduled_event_id, attempt",
        (activity_id, ACTIVITY_RUNNING, token),
    ).fetchone()
    if deleted is None:
        raise StaleTaskError(f"activity attempt {token} is over")
    run_key = deleted[0]
    seen, rows = _core.outcome_rows(outcome, expected_length + 2, now)
    returned = None
    if seen == expected_length + 1:
        returned = _update_run(
            db, _COMMIT_FUSED_OUTCOME, now, run_key, seen, rows, 1, expected=expected_length
        )
    if returned is None:
        args = (deleted[1], result, deleted[2])
        _append_and_wake(db, run_key, now, "ActivityCompleted", args, None, 0)
        return None
    new_length, workflow_id, run_id = returned
    result_event = (run_key, expected_length + 1, "ActivityCompleted", result_row)
    return _store_outcome(
        db, now, run_key, rows, new_length, False, workflow_id, run_id, eager_queue, eager_slots,
        result_event,
    )  # fmt: skip


def _update_run(
    db: sqlite3.Connection,
    statement: str,
    now: int,
    run_key: int,
    seen: int | None,
    rows: list[tuple[Any, ...]],
    extra_events: int = 0,
    **guard: Any,
) -> tuple[Any, ...] | None:
    status = next((effect[1] for *_, effect in rows if effect and effect[0] == "close"), None)
    returned: tuple[Any, ...] | None = db.execute(
        statement,
        {"added": len(rows) + extra_events, "seen": seen, "status": status, "now": now,
         "run_key": run_key, **guard},
    ).fetchone()  # fmt: skip
    return returned


def _store_outcome(
    db: sqlite3.Connection,
    now: int,
    run_key: int,
    rows: list[tuple[Any, ...]],
    new_length: int,
    unseen: bool,
    workflow_id: str,
    run_id: str,
    eager_queue: str | None,
    eager_slots: int,
    result_event: tuple[int, int, str, bytes] | None = None,
) -> Committed:
    """Inserts a task's events (after `result_event`, the activity result a fused commit
    records first, in the same statement) and applies their effects, once the run's row is
    updated."""
    events = [(run_key, event_id, kind, row) for event_id, kind, row, _ in rows]
    if result_event is not None:
        events.insert(0, result_event)
    if events:
        db.executemany(
            "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, ?, ?, ?)", events
        )
    if not rows:
        return None, [], unseen, [], new_length
    appended = [row for _, _, row, _ in rows]
    if any(effect and effect[0] == "close" for *_, effect in rows):
        # Nothing of a closed run stays pending; the task's other effects are moot.
        _drop_pending_work(db, run_key)
        return _core.join_rows([appended[-1]]), [], False, appended, new_length
    # All of the task's events are in before any effect runs: an effect that records an
    # event itself (a cancelled activity) must not split the task's command events.
    effects = _CommitEffects(eager_queue, eager_slots, workflow_id, run_id, unseen)
    for event_id, _, _, effect in rows:
        if effect is not None:
            _apply_effect(db, now, run_key, event_id, effect, effects)
    return None, effects.leases, effects.wakes_pollers, appended, new_length


class _CommitEffects:
    """What a task's commit set in motion: the activity attempts it leased straight to its own
    worker, and whether it left anything for pollers (queued work, a new timer or deadline)."""

    __slots__ = ("leases", "queue", "run_id", "slots", "wakes_pollers", "workflow_id")

    def __init__(
        self, queue: str | None, slots: int, workflow_id: str, run_id: str, wakes_pollers: bool
    ) -> None:
        self.queue, self.slots = queue, slots
        self.workflow_id, self.run_id = workflow_id, run_id
        self.leases: list[tuple[Any, ...]] = []
        self.wakes_pollers = wakes_pollers

    def takes(self, task_queue: str) -> bool:
        return task_queue == self.queue and len(self.leases) < self.slots


def _attempt_deadline(
    now: int, start_to_close: int | None, schedule_to_close: int | None
) -> int | None:
    # Start-to-close falls back to schedule-to-close, as Temporal does.
    per_attempt = start_to_close if start_to_close is not None else schedule_to_close
    return None if per_attempt is None else now + per_attempt


def _apply_effect(
    db: sqlite3.Connection,
    now: int,
    run_key: int,
    event_id: int,
    effect: tuple[Any, ...],
    eager: _CommitEffects,
) -> None:
    kind = effect[0]
    if kind != "activity" or not eager.takes(effect[3]):
        eager.wakes_pollers = True
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
        close_deadline = None if to_close is None else now + to_close
        if eager.takes(task_queue):
            # Inserted as a running attempt: one statement instead of insert, select, update.
            token = _token()
            attempt_deadline = _attempt_deadline(now, start_to_close, to_close)
            cursor = db.execute(
                "INSERT INTO activities (run_key, scheduled_event_id, task_queue, "
                "activity_type, input, policy, schedule_to_close_ms, schedule_to_start_ms, "
                "start_to_close_ms, heartbeat_ms, attempt, scheduled_ms, state, ready_ms, "
                "close_deadline_ms, token, started_ms, attempt_deadline_ms, "
                "heartbeat_deadline_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_key, event_id, task_queue, activity_type, input, _pack(policy),
                    to_close, to_start, start_to_close, heartbeat, now, ACTIVITY_RUNNING, now,
                    close_deadline, token, now, attempt_deadline,
                    None if heartbeat is None else now + heartbeat,
                ),
            )  # fmt: skip
            deadlines = [d for d in (attempt_deadline, close_deadline) if d is not None]
            eager.leases.append(
                (
                    cursor.lastrowid, token, eager.workflow_id, eager.run_id, activity_type,
                    input, 1, b"", now, now, min(deadlines) if deadlines else None, heartbeat,
                    event_id,
                )
            )  # fmt: skip
            return
        db.execute(
            "INSERT INTO activities (run_key, scheduled_event_id, task_queue, activity_type, "
            "input, policy, schedule_to_close_ms, schedule_to_start_ms, start_to_close_ms, "
            "heartbeat_ms, attempt, scheduled_ms, state, ready_ms, start_deadline_ms, "
            "close_deadline_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (
                run_key, event_id, task_queue, activity_type, input, _pack(policy), to_close,
                to_start, start_to_close, heartbeat, now, ACTIVITY_QUEUED, now,
                None if to_start is None else now + to_start, close_deadline,
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
    row = db.execute(
        "DELETE FROM activities WHERE activity_id = ? AND state = ? AND token = ? "
        "RETURNING run_key, scheduled_event_id, attempt",
        (activity_id, ACTIVITY_RUNNING, token),
    ).fetchone()
    if row is None:
        raise StaleTaskError(f"activity attempt {token} is over")
    run_key, scheduled_event_id, attempt = row
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
