"""Workflow-task operations on SQLite: poll, commit (leased or fused with an activity's
result), fail. See `_sqlite_operations` for the rules these transactions follow."""

from __future__ import annotations

import sqlite3
from typing import Any

from .. import _core
from ..errors import StaleTaskError
from ._sqlite_activity_tasks import _attempt_deadline, _resolve_activity, finish_attempt, tick
from ._sqlite_operations import (
    ACTIVITY_QUEUED,
    ACTIVITY_RUNNING,
    IDLE,
    LEASED,
    QUEUED,
    _append_and_wake,
    _drop_pending_work,
    _pack,
    _token,
    refuse_running_duplicate,
)


def poll_workflow_tasks(
    db: sqlite3.Connection, now: int, task_queue: str, lease_ms: int, max_tasks: int
) -> tuple[int, list[tuple[Any, ...]]]:
    """Applies due deadlines, then leases up to `max_tasks` ready tasks, oldest first:
    `(deadlines applied, leases)`. One transaction, one round trip."""
    applied = tick(db, now)
    # One statement leases the whole batch. The fencing tokens are random, as `_token`'s,
    # but drawn by SQLite's generator (seeded from the OS), one per row.
    leased = db.execute(
        f"UPDATE runs SET task_state = {LEASED}, task_deadline_ms = ?, "
        "task_token = (random() & 4611686018427387903) + 1 WHERE run_key IN ("
        # The state is spelled out, not bound: only then may SQLite use the partial index.
        f"SELECT run_key FROM runs WHERE task_queue = ? AND task_state = {QUEUED} "
        "AND task_ready_ms <= ? ORDER BY task_ready_ms LIMIT ?) "
        "RETURNING task_ready_ms, run_key, workflow_id, run_id, workflow_type, "
        "history_length, task_token, tail_start",
        (now + lease_ms, task_queue, now, max_tasks),
    ).fetchall()
    if not leased:
        return applied, []
    leased.sort()  # oldest first
    # And one reads every tail: the events each run's cached instance has not seen.
    tails: dict[int, list[bytes]] = {}
    for run_key, row in db.execute(
        "SELECT e.run_key, e.row FROM runs r JOIN events e "
        "ON e.run_key = r.run_key AND e.event_id >= r.tail_start "
        f"WHERE r.run_key IN ({', '.join('?' * len(leased))}) ORDER BY e.run_key, e.event_id",
        [lease[1] for lease in leased],
    ):
        tails.setdefault(run_key, []).append(row)
    leases = [
        (run_key, workflow_id, run_id, workflow_type, length, token, tail_start,
         _core.join_rows(tails.get(run_key, [])))
        for _, run_key, workflow_id, run_id, workflow_type, length, token, tail_start in leased
    ]  # fmt: skip
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


def start_workflow_with_first_task(
    db: sqlite3.Connection,
    now: int,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    task_queue: str,
    input: bytes,
    started_row: bytes,
    outcome: bytes,
    eager_queue: str | None = None,
    eager_slots: int = 0,
) -> Committed:
    """Records a run (`started_row`: its WorkflowStarted event, as the caller encoded it for
    its instance) with the outcome of its first workflow task, which the caller ran before
    anything was committed: one commit where there were two."""
    refuse_running_duplicate(db, workflow_id)
    seen, rows = _core.outcome_rows(outcome, 2, now)
    if seen != 1:
        raise StaleTaskError(f"a first workflow task sees event 1, not {seen}")
    status = next((effect[1] for *_, effect in rows if effect and effect[0] == "close"), None)
    length = 1 + len(rows)
    cursor = db.execute(
        "INSERT INTO runs (workflow_id, run_id, workflow_type, task_queue, status, "
        "history_length, started_ms, closed_ms, task_state, task_ready_ms, tail_start) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 2)",
        (
            workflow_id, run_id, workflow_type, task_queue, status or "RUNNING", length, now,
            None if status is None else now, IDLE, now,
        ),
    )  # fmt: skip
    run_key = int(cursor.lastrowid or 0)
    started_event = (run_key, 1, "WorkflowStarted", started_row)
    return _store_outcome(
        db, now, run_key, rows, length, False, workflow_id, run_id, eager_queue, eager_slots,
        started_event,
    )  # fmt: skip


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
    run_key, scheduled_event_id, attempt = finish_attempt(db, activity_id, token)
    seen, rows = _core.outcome_rows(outcome, expected_length + 2, now)
    returned = None
    if seen == expected_length + 1:
        returned = _update_run(
            db, _COMMIT_FUSED_OUTCOME, now, run_key, seen, rows, 1, expected=expected_length
        )
    if returned is None:
        args = (scheduled_event_id, result, attempt)
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
    first_event: tuple[int, int, str, bytes] | None = None,
) -> Committed:
    """Inserts a task's events (after `first_event`, the inbound event a fused commit records
    first, in the same statement) and applies their effects, once the run's row is
    written."""
    events = [(run_key, event_id, kind, row) for event_id, kind, row, _ in rows]
    if first_event is not None:
        events.insert(0, first_event)
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
