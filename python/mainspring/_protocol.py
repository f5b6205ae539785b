"""Tags of the tuples that cross the native boundary.

Mirrors ``rust/bindings/src/convert.rs``: an activation is ``(replaying, now_ms, jobs)``; each
job and command is a tuple whose first item is its tag.
"""

from __future__ import annotations

from typing import Any, Final

# An activation: (replaying, now_ms, [job, ...]).
# (replaying, now_ms, jobs, engine flags)
Activation = tuple[bool, int, list[tuple[Any, ...]], int]

# Jobs (core → Python)
JOB_START_WORKFLOW: Final = 0  # (tag, workflow_type, workflow_id, run_id, task_queue, input)
JOB_RESOLVE_ACTIVITY: Final = 1  # (tag, seq, attempt, kind, payload|failure|None, timeout_type)
JOB_FIRE_TIMER: Final = 2  # (tag, seq)
JOB_SIGNAL: Final = 3  # (tag, name, input)
JOB_CANCEL_WORKFLOW: Final = 4  # (tag, reason)

# Kinds of an activity resolution
RESOLUTION_COMPLETED: Final = 0
RESOLUTION_FAILED: Final = 1
RESOLUTION_TIMED_OUT: Final = 2
RESOLUTION_CANCELED: Final = 3

# Commands (Python → core)
# (tag, seq, activity_type, input, task_queue, schedule_to_close_ms, schedule_to_start_ms,
#  start_to_close_ms, heartbeat_ms, initial_interval_ms, backoff_coefficient,
#  maximum_interval_ms, maximum_attempts, non_retryable_error_types)
COMMAND_SCHEDULE_ACTIVITY: Final = 0
COMMAND_REQUEST_CANCEL_ACTIVITY: Final = 1  # (tag, seq)
COMMAND_START_TIMER: Final = 2  # (tag, seq, duration_ms)
COMMAND_CANCEL_TIMER: Final = 3  # (tag, seq)
COMMAND_COMPLETE_WORKFLOW: Final = 4  # (tag, result)
COMMAND_FAIL_WORKFLOW: Final = 5  # (tag, failure)
COMMAND_CANCEL_WORKFLOW: Final = 6  # (tag, details)

# A failure: (message, error_type, non_retryable, details, stack_trace, cause | None)
# (message, error_type, non_retryable, details, stack_trace, cause, next_retry_delay_ms)
FailureTuple = tuple[str, str, bool, bytes, str, "FailureTuple | None", int | None]

# What the stores hand across the boundary (`rust/bindings/src/memory_store.rs` and
# `sqlite_operations.rs`), every store the same layout.

# A leased workflow task of the SQLite store: (run_key, workflow_id, run_id, workflow_type,
# history_length, token, tail_start, tail), the tail being the encoded events from tail_start on.
WorkflowLeaseTuple = tuple[int, str, str, str, int, int, int, bytes]
# A leased workflow task of the memory store: (run_key, token, workflow_id, run_id,
# workflow_type, history_length, deadline_ms).
MemoryLeaseTuple = tuple[int, int, str, str, str, int, int]
# A leased activity attempt: (run_key, scheduled_event_id, activity_id, token, workflow_id,
# run_id, activity_type, input, attempt, heartbeat_details, scheduled_ms, started_ms,
# deadline_ms | None, heartbeat_timeout_ms | None).
ActivityLeaseTuple = tuple[
    int, int, str, int, str, str, str, bytes, int, bytes, int, int, int | None, int | None
]
# A committed workflow task: (closing event | None, [eagerly leased attempt, ...],
# wakes_pollers, the task's events as recorded | None, history_length after them).
CommittedTuple = tuple[bytes | None, list[ActivityLeaseTuple], bool, bytes | None, int]
# A run as describe and list report it: (run_key, workflow_id, run_id, workflow_type,
# task_queue, status, history_length, started_ms, closed_ms | None, last_task_failure | None,
# (task_failures, dropped_signals, workflow_task_leased, lease_identity | None)).
SummaryTuple = tuple[
    int, str, str, str, str, str, int, int, int | None, str | None,
    tuple[int, int, bool, str | None],
]  # fmt: skip

# The rows a database store keeps (rust/core/src/rules/rows.rs): `_core.RunRecord.row()` and
# `_core.ActivityRecord.row()` give them, `from_row` takes them back.
# (run_key, version, workflow_id, run_id, workflow_type, task_queue, status, history_length,
#  task_state, task_ready_ms, task_token, task_deadline_ms, task_failures, last_task_failure,
#  cancel_requested, tail_start, started_ms, closed_ms, dropped_signals)
RunRowTuple = tuple[
    int, int, str, str, str, str, str, int, int, int | None, int | None, int | None, int,
    str | None, bool, int, int, int | None, int,
]  # fmt: skip
# (scheduled_event_id, version, activity_id, task_queue, activity_type, input, policy,
#  schedule_to_close_ms, schedule_to_start_ms, start_to_close_ms, heartbeat_ms, attempt,
#  scheduled_ms, state, ready_ms, token, started_ms, last_heartbeat_ms, heartbeat_details,
#  last_failure, next_deadline_ms); next_deadline_ms is for the store's index, not read back.
ActivityRowTuple = tuple[
    int, int, str, str, str, bytes, bytes, int | None, int | None, int | None, int | None, int,
    int, int, int | None, int | None, int | None, int | None, bytes, bytes | None, int | None,
]  # fmt: skip
