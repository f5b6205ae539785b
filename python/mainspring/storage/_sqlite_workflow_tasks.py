"""Workflow-task operations on SQLite: poll, commit (leased or fused with an activity's
result), fail. See `_sqlite_operations` for the rules these transactions follow."""

from __future__ import annotations

from typing import Any

from ..errors import StaleTaskError
from ._sqlite_batch import Connection, NativeOperation
from ._sqlite_operations import LEASED, QUEUED

# Native (crate mainspring-sqlite, `polls.rs`):
# poll_workflow_tasks(task_queue, lease_ms, max_tasks, check_due) -> (due, [lease, ...]).
#     Leases up to `max_tasks` ready tasks, oldest first, each with the events its run's cached
#     instance has not seen. With `check_due`, leases nothing if a deadline is due (the caller
#     runs `tick` and polls again without the check).
poll_workflow_tasks = NativeOperation("poll_workflow_tasks")


def _check_lease(db: Connection, run_key: int, token: int, now: int) -> int:
    row = db.execute(
        "SELECT history_length FROM runs WHERE run_key = ? AND task_state = ? "
        "AND task_token = ? AND task_deadline_ms >= ?",
        (run_key, LEASED, token, now),
    ).fetchone()
    if row is None:
        raise StaleTaskError(f"workflow task {token} is no longer held by this worker")
    return int(row[0])


# What a commit returns: (closing event or None, eager activity leases, whether pollers have
# new work, the task's events as recorded or None, the history length after it).
Committed = tuple[bytes | None, list[tuple[Any, ...]], bool, bytes | None, int]

# Native (crate mainspring-sqlite, `workflow_tasks.rs`): the commits every workflow goes
# through. Arguments after `now`, in order:
# complete_workflow_task(run_key, token, outcome | None, leased_length, eager_queue,
#     eager_slots) -> Committed. Fenced by the lease; the activities the outcome schedules on
#     `eager_queue` (up to `eager_slots`) are inserted already leased to the caller.
complete_workflow_task = NativeOperation("complete_workflow_task")
# start_workflow_with_first_task(workflow_id, run_id, workflow_type, task_queue, input,
#     started_row, outcome, eager_queue, eager_slots) -> Committed. A run recorded together
#     with the outcome of its first task, which the caller ran before anything was committed.
start_workflow_with_first_task = NativeOperation("start_workflow_with_first_task")
# complete_activity_with_workflow_task(activity_id, token, result, result_row,
#     expected_length, outcome, eager_queue, eager_slots) -> Committed | None. An activity's
#     result together with the task it woke, guarded by the history length; None when the run
#     moved on and only the result went in.
complete_activity_with_workflow_task = NativeOperation("complete_activity_with_workflow_task")


def fail_workflow_task(
    db: Connection,
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
