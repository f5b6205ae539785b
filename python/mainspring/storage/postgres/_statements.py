"""The PostgreSQL store's statements, ``{s}`` standing for its quoted schema. Column lists are
in the order of the core's rows (`RunRecord.row()`, `ActivityRecord.row()`), so a row reads
back as a tuple with no reordering. Every hot statement finds its rows by a primary key or a
partial index over queued or leased rows (see `_schema.py`)."""

from __future__ import annotations

RUN_COLUMNS = (
    "run_key, version, workflow_id, run_id, workflow_type, task_queue, status, history_length, "
    "task_state, task_ready_ms, task_token, task_deadline_ms, task_failures, last_task_failure, "
    "cancel_requested, tail_start, started_ms, closed_ms, dropped_signals"
)

ACTIVITY_COLUMNS = (
    "scheduled_event_id, version, activity_id, task_queue, activity_type, input, policy, "
    "schedule_to_close_ms, schedule_to_start_ms, start_to_close_ms, heartbeat_ms, attempt, "
    "scheduled_ms, state, ready_ms, token, started_ms, last_heartbeat_ms, heartbeat_details, "
    "last_failure, next_deadline_ms"
)

RUN_BY_KEY = f"SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE run_key = $1"
# The open run if there is one, else the latest: keys are drawn as rows are inserted, not as
# they commit, so a closed run may have a later key than the open one.
CURRENT_RUN = (
    f"SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE workflow_id = $1"
    " ORDER BY status = 'RUNNING' DESC, run_key DESC LIMIT 1"
)
# With a closed run's last event (what its `result()` reads next).
RUNS_BY_ID = (
    f"SELECT {', '.join(f'r.{c}' for c in RUN_COLUMNS.split(', '))},"
    " CASE WHEN r.status <> 'RUNNING' THEN (SELECT e.row FROM {s}.events AS e"
    " WHERE e.run_key = r.run_key AND e.event_id = r.history_length) END"
    " FROM {s}.runs AS r WHERE r.run_id = ANY($1::text[])"
)
EVENTS_BY_ID = (
    "SELECT e.run_key, e.event_id, e.row FROM unnest($1::bigint[], $2::bigint[]) AS k(r, e)"
    " JOIN {s}.events AS e ON e.run_key = k.r AND e.event_id = k.e"
)
# One statement per filter, so each is one range of its index (a plan for "either filter or
# none" would be one plan for all three).
LIST_RUNS_BY_STATUS = (
    f"SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE status = $3 AND run_key > $1"
    " AND ($4::text IS NULL OR workflow_type = $4) ORDER BY status, run_key LIMIT $2"
)
LIST_RUNS_BY_TYPE = (
    f"SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE workflow_type = $3 AND run_key > $1"
    " ORDER BY workflow_type, run_key LIMIT $2"
)
LIST_ALL_RUNS = f"SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE run_key > $1 ORDER BY run_key LIMIT $2"

ACTIVITY = (
    f"SELECT {ACTIVITY_COLUMNS} FROM {{s}}.activities"
    " WHERE run_key = $1 AND scheduled_event_id = $2"
)
TIMER = "SELECT fire_ms FROM {s}.timers WHERE run_key = $1 AND started_event_id = $2"
EVENT_ROWS = (
    "SELECT row FROM {s}.events WHERE run_key = $1 AND event_id BETWEEN $2 AND $3 ORDER BY event_id"
)

# Work hand-out: the oldest ready rows no other transaction holds, locked until this one ends.
CLAIM_WORKFLOW_TASKS = (
    f"SELECT {RUN_COLUMNS} FROM {{s}}.runs"
    " WHERE task_queue = $1 AND task_state = 1 AND task_ready_ms <= $2"
    " ORDER BY task_ready_ms LIMIT $3 FOR UPDATE SKIP LOCKED"
)
CLAIM_ACTIVITY_TASKS = (
    "SELECT " + ", ".join(f"r.{c}" for c in RUN_COLUMNS.split(", ")) + ", "
    + ", ".join(f"a.{c}" for c in ACTIVITY_COLUMNS.split(", "))
    + " FROM {s}.activities a JOIN {s}.runs r ON r.run_key = a.run_key"
    " WHERE a.task_queue = $1 AND a.state = 0 AND a.ready_ms <= $2"
    " ORDER BY a.ready_ms LIMIT $3 FOR UPDATE OF a SKIP LOCKED"
)  # fmt: skip

DUE = """
(SELECT fire_ms AS at, 0 AS kind, run_key, started_event_id AS item FROM {s}.timers
    WHERE fire_ms <= $1 ORDER BY fire_ms LIMIT $2)
UNION ALL
(SELECT task_deadline_ms, 1, run_key, 0 FROM {s}.runs
    WHERE task_state = 2 AND task_deadline_ms <= $1 ORDER BY task_deadline_ms LIMIT $2)
UNION ALL
(SELECT next_deadline_ms, 2, run_key, scheduled_event_id FROM {s}.activities
    WHERE next_deadline_ms IS NOT NULL AND next_deadline_ms <= $1
    ORDER BY next_deadline_ms LIMIT $2)
ORDER BY 1, 2, 3, 4 LIMIT $2
"""
# The earliest deadline or ready time a poll would act on; with a queue ($2), work ready on
# it now too (NULL: none is, by queue).
_NEXT_WAKEUP = """least(
    (SELECT min(fire_ms) FROM {s}.timers),
    (SELECT min(task_deadline_ms) FROM {s}.runs WHERE task_state = 2),
    (SELECT min(next_deadline_ms) FROM {s}.activities WHERE next_deadline_ms IS NOT NULL),
    (SELECT min(task_ready_ms) FROM {s}.runs WHERE task_state = 1 AND task_ready_ms > $1),
    (SELECT min(ready_ms) FROM {s}.activities WHERE state = 0 AND ready_ms > $1),
    (SELECT min(task_ready_ms) FROM {s}.runs
        WHERE task_queue = $2 AND task_state = 1 AND task_ready_ms <= $1),
    (SELECT min(ready_ms) FROM {s}.activities
        WHERE task_queue = $2 AND state = 0 AND ready_ms <= $1)
)"""
NEXT_WAKEUP = f"SELECT {_NEXT_WAKEUP}"
# Busy work and the next wakeup in one statement: one snapshot (see
# `StoreTables.busy_and_wakeup`). Taken with no queue ($2 NULL).
BUSY_AND_WAKEUP = f"""
SELECT (SELECT count(*) FROM {{s}}.runs WHERE task_state = 2
            OR (task_state = 1 AND coalesce(task_ready_ms, 0) <= $1))
     + (SELECT count(*) FROM {{s}}.activities WHERE state = 1 OR coalesce(ready_ms, 0) <= $1)
     + (SELECT count(*) FROM {{s}}.queries WHERE state < 2),
    {_NEXT_WAKEUP}
"""

LEASE_IDENTITY = "SELECT lease_identity FROM {s}.runs WHERE run_key = $1"
NOTIFY = "SELECT pg_notify($1, $2)"

SUBMIT_QUERY = (
    "INSERT INTO {s}.queries (task_queue, workflow_id, run_id, name, input, created_ms)"
    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING query_id"
)
TAKE_QUERY = """
UPDATE {s}.queries SET state = 1 WHERE query_id = (
    SELECT query_id FROM {s}.queries WHERE task_queue = $1 AND state = 0
    ORDER BY query_id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING workflow_id, run_id, name, input, query_id
"""
ANSWER_QUERY = (
    "UPDATE {s}.queries SET state = 2, result = $2, error = $3 WHERE query_id = $1 AND state = 1"
)
READ_ANSWER = "SELECT state, result, error FROM {s}.queries WHERE query_id = $1"
DELETE_QUERY = "DELETE FROM {s}.queries WHERE query_id = $1"

# Group commit (`_groups.py`): many members' reads at once (no locks: their writes are
# fenced), and their writes as one statement (`_group_write.py`).

READ_RUNS = f"SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE run_key = ANY($1::bigint[])"
# Activities with their runs (a run row, then its activity's row, NULL if the activity is
# gone): what a member that reads an activity also reads.
READ_ACTIVITIES = (
    "SELECT " + ", ".join(f"r.{c}" for c in RUN_COLUMNS.split(", ")) + ", "
    + ", ".join(f"a.{c}" for c in ACTIVITY_COLUMNS.split(", "))
    + " FROM unnest($1::bigint[], $2::bigint[]) AS k(run_key, scheduled_event_id)"
    " JOIN {s}.runs r ON r.run_key = k.run_key"
    " LEFT JOIN {s}.activities a"
    " ON a.run_key = k.run_key AND a.scheduled_event_id = k.scheduled_event_id"
)  # fmt: skip
# New runs their first task closed: inserted open by the group's write, closed here in the
# same transaction (so the unique index over open runs fenced them too).
CLOSE_NEW_RUNS = (
    "UPDATE {s}.runs SET status = u.status"
    " FROM unnest($1::bigint[], $2::text[]) AS u(run_key, status)"
    " WHERE runs.run_key = u.run_key"
)

# A lost connection's server process, ended before its write is read back (see
# `PostgresTables.settle_lost_write`): known by its pid and when it started (read as each
# connection opens), whether it still runs, and the ending.
BACKEND_START = "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
BACKEND_ALIVE = "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2"
END_BACKEND = "SELECT pg_terminate_backend($1)"
