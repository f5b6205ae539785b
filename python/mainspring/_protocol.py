"""Tags of the tuples that cross the native boundary.

Mirrors ``rust/bindings/src/convert.rs``: an activation is ``(replaying, now_ms, jobs)``; each
job and command is a tuple whose first item is its tag.
"""

from __future__ import annotations

from typing import Final

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
FailureTuple = tuple[str, str, bool, bytes, str, "FailureTuple | None"]
