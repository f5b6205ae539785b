//! The rules' records as rows: loading them, and persisting a [`Plan`] fenced by the versions
//! it was decided on. This is the only place that maps records to columns.

use mainspring_core::history::{encode_event_row, ActivityOptions, Payload};
use mainspring_core::rules::{
    ActivityRecord, ActivityWrite, AttemptState, Plan, RunIdentity, RunRecord, RunStatus,
    ScheduledActivity, TimerRecord, TimerWrite, WorkflowTaskState,
};
use mainspring_core::CoreError;
use rusqlite::{named_params, params, Connection, ErrorCode, OptionalExtension, Row};

use crate::error::{StoreError, StoreResult};
use crate::msgpack::{decode_failure, decode_policy, encode_failure, encode_policy};

/// `runs.task_state`, as the schema documents it.
const IDLE: i64 = 0;
const QUEUED: i64 = 1;
const LEASED: i64 = 2;
/// `activities.state`.
const ATTEMPT_QUEUED: i64 = 0;
const ATTEMPT_RUNNING: i64 = 1;

/// The columns [`run_from_row`] reads, in its order.
pub const RUN_COLUMNS: &str = "run_key, version, workflow_id, run_id, workflow_type, \
     task_queue, status, history_length, task_state, task_ready_ms, task_token, \
     task_deadline_ms, task_failures, last_task_failure, cancel_requested, tail_start, \
     started_ms, closed_ms";

pub fn run_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<RunRecord>> {
    let status: String = row.get(6)?;
    let state: i64 = row.get(8)?;
    let workflow_task = match state {
        QUEUED => WorkflowTaskState::Queued {
            ready_at_ms: row.get::<_, Option<i64>>(9)?.unwrap_or(0),
        },
        LEASED => WorkflowTaskState::Leased {
            token: row.get::<_, Option<i64>>(10)?.unwrap_or(0),
            deadline_ms: row.get::<_, Option<i64>>(11)?.unwrap_or(i64::MIN),
        },
        _ => WorkflowTaskState::Idle,
    };
    let status = match RunStatus::from_name(&status) {
        Ok(status) => status,
        Err(error) => return Ok(Err(error.into())),
    };
    Ok(Ok(RunRecord {
        key: row.get(0)?,
        version: row.get(1)?,
        identity: std::sync::Arc::new(RunIdentity {
            workflow_id: row.get(2)?,
            run_id: row.get(3)?,
            workflow_type: row.get(4)?,
            task_queue: row.get(5)?,
        }),
        status,
        history_length: row.get::<_, i64>(7)? as u64,
        workflow_task,
        task_failures: row.get::<_, i64>(12)? as u32,
        last_task_failure: row.get(13)?,
        cancel_requested: row.get::<_, i64>(14)? != 0,
        tail_start: row.get::<_, i64>(15)? as u64,
        started_ms: row.get(16)?,
        closed_ms: row.get(17)?,
    }))
}

fn flatten<T>(found: Option<StoreResult<T>>) -> StoreResult<Option<T>> {
    found.transpose()
}

/// The run with key `run_key`.
pub fn load_run(connection: &Connection, run_key: i64) -> StoreResult<RunRecord> {
    let found = connection
        .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_key = ?"))?
        .query_row([run_key], run_from_row)
        .optional()?;
    flatten(found)?.ok_or_else(|| CoreError::WorkflowNotFound(format!("run key {run_key}")).into())
}

/// The latest run of `workflow_id` (open or closed).
pub fn load_current_run(connection: &Connection, workflow_id: &str) -> StoreResult<RunRecord> {
    let found = connection
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ? ORDER BY run_key DESC LIMIT 1"
        ))?
        .query_row([workflow_id], run_from_row)
        .optional()?;
    flatten(found)?.ok_or_else(|| CoreError::WorkflowNotFound(workflow_id.to_string()).into())
}

/// The run with id `run_id`.
pub fn load_run_by_id(connection: &Connection, run_id: &str) -> StoreResult<RunRecord> {
    let found = connection
        .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"))?
        .query_row([run_id], run_from_row)
        .optional()?;
    flatten(found)?.ok_or_else(|| CoreError::WorkflowNotFound(format!("run {run_id}")).into())
}

/// The columns [`activity_from_row`] reads, in its order, of the table aliased `a`.
pub const ACTIVITY_COLUMNS: &str = "a.scheduled_event_id, a.version, a.activity_id, \
     a.task_queue, a.activity_type, a.input, a.policy, a.schedule_to_close_ms, \
     a.schedule_to_start_ms, a.start_to_close_ms, a.heartbeat_ms, a.attempt, a.scheduled_ms, \
     a.state, a.ready_ms, a.token, a.started_ms, a.last_heartbeat_ms, a.heartbeat_details, \
     a.last_failure";
/// How many columns [`activity_from_row`] reads (a query may select more after them).
pub const ACTIVITY_COLUMN_COUNT: usize = 20;

fn milliseconds(value: Option<i64>) -> Option<u64> {
    value.map(|ms| ms.max(0) as u64)
}

pub fn activity_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<ActivityRecord>> {
    let policy: Vec<u8> = row.get(6)?;
    let retry_policy = match decode_policy(&policy) {
        Ok(policy) => policy,
        Err(error) => return Ok(Err(error)),
    };
    let last_failure: Option<Vec<u8>> = row.get(19)?;
    let last_failure = match last_failure.as_deref().map(decode_failure).transpose() {
        Ok(failure) => failure,
        Err(error) => return Ok(Err(error)),
    };
    let state = if row.get::<_, i64>(13)? == ATTEMPT_RUNNING {
        let started_ms: i64 = row.get::<_, Option<i64>>(16)?.unwrap_or(0);
        AttemptState::Running {
            token: row.get::<_, Option<i64>>(15)?.unwrap_or(0),
            started_ms,
            last_heartbeat_ms: row.get::<_, Option<i64>>(17)?.unwrap_or(started_ms),
        }
    } else {
        AttemptState::Queued {
            ready_at_ms: row.get::<_, Option<i64>>(14)?.unwrap_or(0),
        }
    };
    Ok(Ok(ActivityRecord {
        scheduled_event_id: row.get::<_, i64>(0)? as u64,
        version: row.get(1)?,
        scheduled: std::sync::Arc::new(ScheduledActivity {
            activity_id: row.get(2)?,
            activity_type: row.get(4)?,
            input: Payload(row.get(5)?),
            options: ActivityOptions {
                task_queue: row.get(3)?,
                schedule_to_close_ms: milliseconds(row.get(7)?),
                schedule_to_start_ms: milliseconds(row.get(8)?),
                start_to_close_ms: milliseconds(row.get(9)?),
                heartbeat_ms: milliseconds(row.get(10)?),
                retry_policy,
            },
        }),
        attempt: row.get::<_, i64>(11)? as u32,
        scheduled_ms: row.get(12)?,
        state,
        heartbeat_details: Payload(row.get(18)?),
        last_failure,
    }))
}

/// The open activity of run `run_key` scheduled by event `scheduled_event_id`, if open.
pub fn load_activity(
    connection: &Connection,
    run_key: i64,
    scheduled_event_id: u64,
) -> StoreResult<Option<ActivityRecord>> {
    let found = connection
        .prepare_cached(&format!(
            "SELECT {ACTIVITY_COLUMNS} FROM activities a \
             WHERE a.run_key = ? AND a.scheduled_event_id = ?"
        ))?
        .query_row(
            params![run_key, scheduled_event_id as i64],
            activity_from_row,
        )
        .optional()?;
    flatten(found)
}

/// [`load_activity`] for an attempt its caller holds: gone is a stale task.
pub fn load_held_activity(
    connection: &Connection,
    run_key: i64,
    scheduled_event_id: u64,
    token: i64,
) -> StoreResult<ActivityRecord> {
    load_activity(connection, run_key, scheduled_event_id)?
        .ok_or_else(|| CoreError::StaleTask(format!("activity attempt {token} is over")).into())
}

pub fn load_timer(
    connection: &Connection,
    run_key: i64,
    started_event_id: u64,
) -> StoreResult<Option<TimerRecord>> {
    Ok(connection
        .prepare_cached("SELECT fire_ms FROM timers WHERE run_key = ? AND started_event_id = ?")?
        .query_row(params![run_key, started_event_id as i64], |row| {
            Ok(TimerRecord {
                started_event_id,
                fire_at_ms: row.get(0)?,
            })
        })
        .optional()?)
}

fn conflict(what: String) -> StoreError {
    CoreError::Conflict(what).into()
}

/// Persists `plan`, the changes to run `run_key` (None: a new run, whose key is returned).
/// Every write of a record that existed is fenced by the version it was loaded at; a new run
/// by the unique index over open runs' workflow ids. The caller's transaction (savepoint)
/// undoes everything if this fails part way.
pub fn persist(connection: &Connection, run_key: Option<i64>, plan: &Plan) -> StoreResult<i64> {
    let key = match (&plan.run, run_key) {
        (Some(change), None) if change.expected_version.is_none() => {
            insert_run(connection, &change.record)?
        }
        (Some(change), Some(key)) => {
            let expected = change
                .expected_version
                .ok_or_else(|| conflict("a loaded run is updated, not inserted".into()))?;
            update_run(connection, key, expected, &change.record)?;
            key
        }
        (None, Some(key)) => key,
        _ => return Err(conflict("a new run's plan records it".into())),
    };
    if !plan.events.is_empty() {
        let mut statement = connection.prepare_cached(
            "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, ?, ?, ?)",
        )?;
        for event in &plan.events {
            statement.execute(params![
                key,
                event.event_id as i64,
                event.attributes.kind(),
                encode_event_row(event),
            ])?;
        }
    }
    for write in &plan.activities {
        persist_activity(connection, key, write)?;
    }
    for write in &plan.timers {
        match write {
            TimerWrite::Insert(timer) => {
                connection
                    .prepare_cached(
                        "INSERT INTO timers (run_key, started_event_id, fire_ms) VALUES (?, ?, ?)",
                    )?
                    .execute(params![
                        key,
                        timer.started_event_id as i64,
                        timer.fire_at_ms
                    ])?;
            }
            TimerWrite::Delete { started_event_id } => {
                connection
                    .prepare_cached(
                        "DELETE FROM timers WHERE run_key = ? AND started_event_id = ?",
                    )?
                    .execute(params![key, *started_event_id as i64])?;
            }
        }
    }
    if plan.drop_pending_work {
        connection
            .prepare_cached("DELETE FROM activities WHERE run_key = ?")?
            .execute([key])?;
        connection
            .prepare_cached("DELETE FROM timers WHERE run_key = ?")?
            .execute([key])?;
    }
    Ok(key)
}

/// `(task_state, task_ready_ms, task_token, task_deadline_ms)`.
fn task_columns(task: WorkflowTaskState) -> (i64, Option<i64>, Option<i64>, Option<i64>) {
    match task {
        WorkflowTaskState::Idle => (IDLE, None, None, None),
        WorkflowTaskState::Queued { ready_at_ms } => (QUEUED, Some(ready_at_ms), None, None),
        WorkflowTaskState::Leased { token, deadline_ms } => {
            (LEASED, None, Some(token), Some(deadline_ms))
        }
    }
}

/// Inserts a new run. It goes in open, whatever its record says, so that the unique index over
/// open runs' workflow ids fences it; a run its first task already closed (a fused start) is
/// closed by a second statement.
fn insert_run(connection: &Connection, record: &RunRecord) -> StoreResult<i64> {
    let (state, ready, token, deadline) = task_columns(record.workflow_task);
    let identity = &record.identity;
    let inserted = connection
        .prepare_cached(
            "INSERT INTO runs (workflow_id, run_id, workflow_type, task_queue, status, \
             history_length, started_ms, closed_ms, task_state, task_ready_ms, task_token, \
             task_deadline_ms, task_failures, last_task_failure, cancel_requested, tail_start, \
             version) VALUES (:workflow_id, :run_id, :workflow_type, :task_queue, :status, \
             :history_length, :started_ms, :closed_ms, :task_state, :task_ready_ms, :task_token, \
             :task_deadline_ms, :task_failures, :last_task_failure, :cancel_requested, \
             :tail_start, :version) RETURNING run_key",
        )?
        .query_row(
            named_params! {
                ":workflow_id": identity.workflow_id,
                ":run_id": identity.run_id,
                ":workflow_type": identity.workflow_type,
                ":task_queue": identity.task_queue,
                ":status": RunStatus::Running.name(),
                ":history_length": record.history_length as i64,
                ":started_ms": record.started_ms,
                ":closed_ms": None::<i64>,
                ":task_state": state,
                ":task_ready_ms": ready,
                ":task_token": token,
                ":task_deadline_ms": deadline,
                ":task_failures": record.task_failures,
                ":last_task_failure": record.last_task_failure,
                ":cancel_requested": record.cancel_requested,
                ":tail_start": record.tail_start as i64,
                ":version": record.version,
            },
            |row| row.get(0),
        );
    match inserted {
        Ok(key) if record.is_running() => Ok(key),
        Ok(key) => {
            connection
                .prepare_cached("UPDATE runs SET status = ?, closed_ms = ? WHERE run_key = ?")?
                .execute(params![record.status.name(), record.closed_ms, key])?;
            Ok(key)
        }
        Err(rusqlite::Error::SqliteFailure(failure, message))
            if failure.code == ErrorCode::ConstraintViolation
                && message
                    .as_deref()
                    .is_some_and(|text| text.contains("runs.workflow_id")) =>
        {
            Err(CoreError::WorkflowAlreadyStarted(identity.workflow_id.clone()).into())
        }
        Err(error) => Err(error.into()),
    }
}

fn update_run(
    connection: &Connection,
    key: i64,
    expected_version: i64,
    record: &RunRecord,
) -> StoreResult<()> {
    let (state, ready, token, deadline) = task_columns(record.workflow_task);
    let changed = connection
        .prepare_cached(
            "UPDATE runs SET version = :version, status = :status, \
             history_length = :history_length, closed_ms = :closed_ms, task_state = :task_state, \
             task_ready_ms = :task_ready_ms, task_token = :task_token, \
             task_deadline_ms = :task_deadline_ms, task_failures = :task_failures, \
             last_task_failure = :last_task_failure, cancel_requested = :cancel_requested, \
             tail_start = :tail_start WHERE run_key = :run_key AND version = :expected",
        )?
        .execute(named_params! {
            ":version": record.version,
            ":status": record.status.name(),
            ":history_length": record.history_length as i64,
            ":closed_ms": record.closed_ms,
            ":task_state": state,
            ":task_ready_ms": ready,
            ":task_token": token,
            ":task_deadline_ms": deadline,
            ":task_failures": record.task_failures,
            ":last_task_failure": record.last_task_failure,
            ":cancel_requested": record.cancel_requested,
            ":tail_start": record.tail_start as i64,
            ":run_key": key,
            ":expected": expected_version,
        })?;
    if changed != 1 {
        return Err(conflict(format!(
            "run {key} changed after it was loaded at version {expected_version}"
        )));
    }
    Ok(())
}

fn persist_activity(
    connection: &Connection,
    run_key: i64,
    write: &ActivityWrite,
) -> StoreResult<()> {
    let (record, expected) = match write {
        ActivityWrite::Delete {
            scheduled_event_id,
            expected_version,
        } => {
            let deleted = connection
                .prepare_cached(
                    "DELETE FROM activities WHERE run_key = ? AND scheduled_event_id = ? \
                     AND version = ?",
                )?
                .execute(params![
                    run_key,
                    *scheduled_event_id as i64,
                    expected_version
                ])?;
            if deleted != 1 {
                return Err(conflict(format!(
                    "activity {scheduled_event_id} of run {run_key} changed after it was loaded"
                )));
            }
            return Ok(());
        }
        ActivityWrite::Insert(record) => (record, None),
        ActivityWrite::Update {
            expected_version,
            record,
        } => (record, Some(*expected_version)),
    };
    let (state, ready, token, started, last_heartbeat) = match record.state {
        AttemptState::Queued { ready_at_ms } => {
            (ATTEMPT_QUEUED, Some(ready_at_ms), None, None, None)
        }
        AttemptState::Running {
            token,
            started_ms,
            last_heartbeat_ms,
        } => (
            ATTEMPT_RUNNING,
            None,
            Some(token),
            Some(started_ms),
            Some(last_heartbeat_ms),
        ),
    };
    let Some(expected) = expected else {
        let options = &record.scheduled.options;
        let millis = |value: Option<u64>| value.map(|ms| ms as i64);
        connection
            .prepare_cached(
                "INSERT INTO activities (run_key, scheduled_event_id, version, activity_id, \
                 task_queue, activity_type, input, policy, schedule_to_close_ms, \
                 schedule_to_start_ms, start_to_close_ms, heartbeat_ms, attempt, scheduled_ms, \
                 state, ready_ms, token, started_ms, last_heartbeat_ms, heartbeat_details, \
                 last_failure, next_deadline_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                run_key,
                record.scheduled_event_id as i64,
                record.version,
                record.scheduled.activity_id,
                options.task_queue,
                record.scheduled.activity_type,
                record.scheduled.input.0,
                encode_policy(&options.retry_policy),
                millis(options.schedule_to_close_ms),
                millis(options.schedule_to_start_ms),
                millis(options.start_to_close_ms),
                millis(options.heartbeat_ms),
                record.attempt,
                record.scheduled_ms,
                state,
                ready,
                token,
                started,
                last_heartbeat,
                record.heartbeat_details.0,
                record.last_failure.as_ref().map(encode_failure),
                record.next_deadline_ms(),
            ])?;
        return Ok(());
    };
    // What an attempt's life changes; what it was scheduled with stays.
    let changed = connection
        .prepare_cached(
            "UPDATE activities SET version = ?, attempt = ?, state = ?, ready_ms = ?, token = ?, \
             started_ms = ?, last_heartbeat_ms = ?, heartbeat_details = ?, last_failure = ?, \
             next_deadline_ms = ? WHERE run_key = ? AND scheduled_event_id = ? AND version = ?",
        )?
        .execute(params![
            record.version,
            record.attempt,
            state,
            ready,
            token,
            started,
            last_heartbeat,
            record.heartbeat_details.0,
            record.last_failure.as_ref().map(encode_failure),
            record.next_deadline_ms(),
            run_key,
            record.scheduled_event_id as i64,
            expected,
        ])?;
    if changed != 1 {
        return Err(conflict(format!(
            "activity {} of run {run_key} changed after it was loaded at version {expected}",
            record.scheduled_event_id
        )));
    }
    Ok(())
}
