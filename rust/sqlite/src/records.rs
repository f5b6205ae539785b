//! The rules' records as rows: loading them, and persisting a [`Plan`] fenced by the versions
//! it was decided on. This is the only place that maps records to columns.

use mainspring_core::history::encode_event_row;
use mainspring_core::rules::{
    ActivityRecord, ActivityRow, ActivityWrite, Plan, RunRecord, RunRow, RunStatus, TimerRecord,
    TimerWrite,
};
use mainspring_core::CoreError;
use rusqlite::{named_params, params, Connection, ErrorCode, OptionalExtension, Row};

use crate::error::{StoreError, StoreResult};
use crate::operation::HeldAttempt;

/// The columns [`run_from_row`] reads, in its order: those of [`RunRow`]. A macro, so that
/// statements can be `const`s built with `concat!` (the query-plan test reads those).
macro_rules! run_columns {
    () => {
        "run_key, version, workflow_id, run_id, workflow_type, task_queue, status, \
         history_length, task_state, task_ready_ms, task_token, task_deadline_ms, \
         task_failures, last_task_failure, cancel_requested, tail_start, started_ms, \
         closed_ms, dropped_signals"
    };
}
pub(crate) use run_columns;

pub const LOAD_RUN_SQL: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE run_key = ?");
pub const LOAD_CURRENT_RUN_SQL: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE workflow_id = ? ORDER BY run_key DESC LIMIT 1"
);
pub const LOAD_RUN_BY_ID_SQL: &str =
    concat!("SELECT ", run_columns!(), " FROM runs WHERE run_id = ?");

pub fn run_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<RunRecord>> {
    let run_row = RunRow {
        run_key: row.get(0)?,
        version: row.get(1)?,
        workflow_id: row.get(2)?,
        run_id: row.get(3)?,
        workflow_type: row.get(4)?,
        task_queue: row.get(5)?,
        status: row.get(6)?,
        history_length: row.get(7)?,
        task_state: row.get(8)?,
        task_ready_ms: row.get(9)?,
        task_token: row.get(10)?,
        task_deadline_ms: row.get(11)?,
        task_failures: row.get(12)?,
        last_task_failure: row.get(13)?,
        cancel_requested: row.get::<_, i64>(14)? != 0,
        tail_start: row.get(15)?,
        started_ms: row.get(16)?,
        closed_ms: row.get(17)?,
        dropped_signals: row.get(18)?,
    };
    Ok(RunRecord::from_row(run_row).map_err(StoreError::from))
}

fn flatten<T>(found: Option<StoreResult<T>>) -> StoreResult<Option<T>> {
    found.transpose()
}

/// The run with key `run_key`.
pub fn load_run(connection: &Connection, run_key: i64) -> StoreResult<RunRecord> {
    let found = connection
        .prepare_cached(LOAD_RUN_SQL)?
        .query_row([run_key], run_from_row)
        .optional()?;
    flatten(found)?.ok_or_else(|| CoreError::WorkflowNotFound(format!("run key {run_key}")).into())
}

/// The latest run of `workflow_id` (open or closed).
pub fn load_current_run(connection: &Connection, workflow_id: &str) -> StoreResult<RunRecord> {
    let found = connection
        .prepare_cached(LOAD_CURRENT_RUN_SQL)?
        .query_row([workflow_id], run_from_row)
        .optional()?;
    flatten(found)?.ok_or_else(|| CoreError::WorkflowNotFound(workflow_id.to_string()).into())
}

/// The run with id `run_id`.
pub fn load_run_by_id(connection: &Connection, run_id: &str) -> StoreResult<RunRecord> {
    let found = connection
        .prepare_cached(LOAD_RUN_BY_ID_SQL)?
        .query_row([run_id], run_from_row)
        .optional()?;
    flatten(found)?.ok_or_else(|| CoreError::WorkflowNotFound(format!("run {run_id}")).into())
}

/// The columns [`activity_from_row`] reads, in its order (those of [`ActivityRow`] but the
/// index's `next_deadline_ms`), of the table aliased `a`. A macro, as [`run_columns`].
macro_rules! activity_columns {
    () => {
        "a.scheduled_event_id, a.version, a.activity_id, a.task_queue, a.activity_type, \
         a.input, a.policy, a.schedule_to_close_ms, a.schedule_to_start_ms, \
         a.start_to_close_ms, a.heartbeat_ms, a.attempt, a.scheduled_ms, a.state, a.ready_ms, \
         a.token, a.started_ms, a.last_heartbeat_ms, a.heartbeat_details, a.last_failure"
    };
}
pub(crate) use activity_columns;
/// How many columns [`activity_from_row`] reads (a query may select more after them).
pub const ACTIVITY_COLUMN_COUNT: usize = 20;

pub fn activity_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<ActivityRecord>> {
    let activity_row = ActivityRow {
        scheduled_event_id: row.get(0)?,
        version: row.get(1)?,
        activity_id: row.get(2)?,
        task_queue: row.get(3)?,
        activity_type: row.get(4)?,
        input: row.get(5)?,
        policy: row.get(6)?,
        schedule_to_close_ms: row.get(7)?,
        schedule_to_start_ms: row.get(8)?,
        start_to_close_ms: row.get(9)?,
        heartbeat_ms: row.get(10)?,
        attempt: row.get(11)?,
        scheduled_ms: row.get(12)?,
        state: row.get(13)?,
        ready_ms: row.get(14)?,
        token: row.get(15)?,
        started_ms: row.get(16)?,
        last_heartbeat_ms: row.get(17)?,
        heartbeat_details: row.get(18)?,
        last_failure: row.get(19)?,
        next_deadline_ms: None,
    };
    Ok(ActivityRecord::from_row(activity_row).map_err(StoreError::from))
}

pub const LOAD_ACTIVITY_SQL: &str = concat!(
    "SELECT ",
    activity_columns!(),
    " FROM activities a WHERE a.run_key = ? AND a.scheduled_event_id = ?"
);

/// The open activity of run `run_key` scheduled by event `scheduled_event_id`, if open.
pub fn load_activity(
    connection: &Connection,
    run_key: i64,
    scheduled_event_id: u64,
) -> StoreResult<Option<ActivityRecord>> {
    let found = connection
        .prepare_cached(LOAD_ACTIVITY_SQL)?
        .query_row(
            params![run_key, scheduled_event_id as i64],
            activity_from_row,
        )
        .optional()?;
    flatten(found)
}

/// The activity of an attempt its caller holds: gone is a stale task.
pub fn load_held_activity(
    connection: &Connection,
    attempt: HeldAttempt,
) -> StoreResult<ActivityRecord> {
    load_activity(connection, attempt.run_key, attempt.scheduled_event_id)?.ok_or_else(|| {
        CoreError::StaleTask(format!("activity attempt {} is over", attempt.token)).into()
    })
}

/// The activity of an attempt its caller holds, and its run.
pub fn load_held(
    connection: &Connection,
    attempt: HeldAttempt,
) -> StoreResult<(RunRecord, ActivityRecord)> {
    let activity = load_held_activity(connection, attempt)?;
    Ok((load_run(connection, attempt.run_key)?, activity))
}

pub const LOAD_TIMER_SQL: &str =
    "SELECT fire_ms FROM timers WHERE run_key = ? AND started_event_id = ?";

pub fn load_timer(
    connection: &Connection,
    run_key: i64,
    started_event_id: u64,
) -> StoreResult<Option<TimerRecord>> {
    Ok(connection
        .prepare_cached(LOAD_TIMER_SQL)?
        .query_row(params![run_key, started_event_id as i64], |row| {
            Ok(TimerRecord {
                started_event_id,
                fire_at_ms: row.get(0)?,
            })
        })
        .optional()?)
}

pub const INSERT_EVENT_SQL: &str =
    "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, ?, ?, ?)";
pub const INSERT_TIMER_SQL: &str =
    "INSERT INTO timers (run_key, started_event_id, fire_ms) VALUES (?, ?, ?)";
pub const DELETE_TIMER_SQL: &str = "DELETE FROM timers WHERE run_key = ? AND started_event_id = ?";
/// A closed run's pending work.
pub const DELETE_RUN_ACTIVITIES_SQL: &str = "DELETE FROM activities WHERE run_key = ?";
pub const DELETE_RUN_TIMERS_SQL: &str = "DELETE FROM timers WHERE run_key = ?";

fn conflict(what: String) -> StoreError {
    CoreError::Conflict(what).into()
}

/// Persists `plan`, the changes to run `run_key` (None: a new run, whose key is returned).
/// Every write of a record that existed is fenced by the version it was loaded at; a new run
/// by the unique index over open runs' workflow ids. The caller's transaction (savepoint)
/// undoes everything if this fails part way.
pub fn persist(connection: &Connection, run_key: Option<i64>, plan: &Plan) -> StoreResult<i64> {
    persist_rows(connection, run_key, plan).map(|(key, _)| key)
}

/// [`persist`], returning the plan's events as the rows it stored (each encoded once, for
/// the caller to hand out too).
pub fn persist_rows(
    connection: &Connection,
    run_key: Option<i64>,
    plan: &Plan,
) -> StoreResult<(i64, Vec<Vec<u8>>)> {
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
    let rows: Vec<Vec<u8>> = plan.events.iter().map(encode_event_row).collect();
    if !rows.is_empty() {
        let mut statement = connection.prepare_cached(INSERT_EVENT_SQL)?;
        for (event, row) in plan.events.iter().zip(&rows) {
            statement.execute(params![
                key,
                event.event_id as i64,
                event.attributes.kind(),
                row,
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
                    .prepare_cached(INSERT_TIMER_SQL)?
                    .execute(params![
                        key,
                        timer.started_event_id as i64,
                        timer.fire_at_ms
                    ])?;
            }
            TimerWrite::Cancel { started_event_id } | TimerWrite::Fire { started_event_id } => {
                let deleted = connection
                    .prepare_cached(DELETE_TIMER_SQL)?
                    .execute(params![key, *started_event_id as i64])?;
                if deleted != 1 && matches!(write, TimerWrite::Fire { .. }) {
                    return Err(conflict(format!(
                        "timer {started_event_id} of run {key} already fired"
                    )));
                }
            }
        }
    }
    if plan.drop_pending_work {
        connection
            .prepare_cached(DELETE_RUN_ACTIVITIES_SQL)?
            .execute([key])?;
        connection
            .prepare_cached(DELETE_RUN_TIMERS_SQL)?
            .execute([key])?;
    }
    Ok((key, rows))
}

pub const INSERT_RUN_SQL: &str = "INSERT INTO runs (workflow_id, run_id, workflow_type, \
     task_queue, status, history_length, started_ms, closed_ms, task_state, task_ready_ms, \
     task_token, task_deadline_ms, task_failures, last_task_failure, cancel_requested, \
     tail_start, version, dropped_signals, lease_identity) VALUES (:workflow_id, :run_id, \
     :workflow_type, :task_queue, :status, :history_length, :started_ms, NULL, :task_state, \
     :task_ready_ms, :task_token, :task_deadline_ms, :task_failures, :last_task_failure, \
     :cancel_requested, :tail_start, :version, :dropped_signals, \
     CASE WHEN :task_state = 2 THEN (SELECT identity FROM temp.mainspring_session WHERE key = 1) END) \
     RETURNING run_key";
/// Closes a run just inserted open (its first task closed it).
pub const CLOSE_NEW_RUN_SQL: &str = "UPDATE runs SET status = ?, closed_ms = ? WHERE run_key = ?";

/// Inserts a new run. It goes in open, whatever its record says, so that the unique index over
/// open runs' workflow ids fences it; a run its first task already closed (a fused start) is
/// closed by a second statement.
fn insert_run(connection: &Connection, record: &RunRecord) -> StoreResult<i64> {
    let row = record.to_row();
    let inserted = connection.prepare_cached(INSERT_RUN_SQL)?.query_row(
        named_params! {
            ":workflow_id": row.workflow_id,
            ":run_id": row.run_id,
            ":workflow_type": row.workflow_type,
            ":task_queue": row.task_queue,
            ":status": RunStatus::Running.name(),
            ":history_length": row.history_length,
            ":started_ms": row.started_ms,
            ":task_state": row.task_state,
            ":task_ready_ms": row.task_ready_ms,
            ":task_token": row.task_token,
            ":task_deadline_ms": row.task_deadline_ms,
            ":task_failures": row.task_failures,
            ":last_task_failure": row.last_task_failure,
            ":cancel_requested": row.cancel_requested,
            ":tail_start": row.tail_start,
            ":version": row.version,
            ":dropped_signals": row.dropped_signals,
        },
        |result| result.get(0),
    );
    match inserted {
        Ok(key) if record.is_running() => Ok(key),
        Ok(key) => {
            connection
                .prepare_cached(CLOSE_NEW_RUN_SQL)?
                .execute(params![row.status, row.closed_ms, key])?;
            Ok(key)
        }
        Err(rusqlite::Error::SqliteFailure(failure, message))
            if failure.code == ErrorCode::ConstraintViolation
                && message
                    .as_deref()
                    .is_some_and(|text| text.contains("runs.workflow_id")) =>
        {
            Err(CoreError::WorkflowAlreadyStarted(row.workflow_id).into())
        }
        Err(error) => Err(error.into()),
    }
}

/// Updates a run that stays open. Its status (and close time) are left out of the SET on
/// purpose: SQLite rewrites the entries of every index over a column the SET names, changed
/// or not, and `status` is in two (`runs_by_status`, and the condition of
/// `runs_open_workflow`). A run never reopens, so an open record was loaded from an open row,
/// and the version fences it as ever. Parameters are numbered as in [`UPDATE_RUN_SQL`], so
/// both statements take the same values.
///
/// The lease's holder (`lease_identity`, for `describe`) is this process's identity when the
/// write makes a new lease (a leased task under a token it did not have), kept while the same
/// lease stays (another process's write to the run, a signal, leaves it), and cleared when
/// no worker holds the task. The right side of a SET sees the row as it was.
pub const UPDATE_OPEN_RUN_SQL: &str = "UPDATE runs SET version = ?1, history_length = ?3, \
     task_state = ?5, task_ready_ms = ?6, task_token = ?7, task_deadline_ms = ?8, \
     task_failures = ?9, last_task_failure = ?10, cancel_requested = ?11, tail_start = ?12, \
     dropped_signals = ?13, lease_identity = CASE WHEN ?5 <> 2 THEN NULL \
     WHEN task_token IS ?7 THEN lease_identity \
     ELSE (SELECT identity FROM temp.mainspring_session WHERE key = 1) END \
     WHERE run_key = ?14 AND version = ?15";
/// Updates a run that closes (or was closed).
pub const UPDATE_RUN_SQL: &str = "UPDATE runs SET version = ?1, status = ?2, \
     history_length = ?3, closed_ms = ?4, task_state = ?5, task_ready_ms = ?6, task_token = ?7, \
     task_deadline_ms = ?8, task_failures = ?9, last_task_failure = ?10, \
     cancel_requested = ?11, tail_start = ?12, dropped_signals = ?13, lease_identity = NULL \
     WHERE run_key = ?14 AND version = ?15";

fn update_run(
    connection: &Connection,
    key: i64,
    expected_version: i64,
    record: &RunRecord,
) -> StoreResult<()> {
    let row = record.to_row();
    let sql = if record.is_running() {
        UPDATE_OPEN_RUN_SQL
    } else {
        UPDATE_RUN_SQL
    };
    let changed = connection.prepare_cached(sql)?.execute(params![
        row.version,
        row.status,
        row.history_length,
        row.closed_ms,
        row.task_state,
        row.task_ready_ms,
        row.task_token,
        row.task_deadline_ms,
        row.task_failures,
        row.last_task_failure,
        row.cancel_requested,
        row.tail_start,
        row.dropped_signals,
        key,
        expected_version,
    ])?;
    if changed != 1 {
        return Err(conflict(format!(
            "run {key} changed after it was loaded at version {expected_version}"
        )));
    }
    Ok(())
}

pub const DELETE_ACTIVITY_SQL: &str =
    "DELETE FROM activities WHERE run_key = ? AND scheduled_event_id = ? AND version = ?";
pub const INSERT_ACTIVITY_SQL: &str = "INSERT INTO activities (run_key, scheduled_event_id, \
     version, activity_id, task_queue, activity_type, input, policy, schedule_to_close_ms, \
     schedule_to_start_ms, start_to_close_ms, heartbeat_ms, attempt, scheduled_ms, state, \
     ready_ms, token, started_ms, last_heartbeat_ms, heartbeat_details, last_failure, \
     next_deadline_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// What an attempt's life changes; what it was scheduled with stays.
pub const UPDATE_ACTIVITY_SQL: &str = "UPDATE activities SET version = ?, attempt = ?, \
     state = ?, ready_ms = ?, token = ?, started_ms = ?, last_heartbeat_ms = ?, \
     heartbeat_details = ?, last_failure = ?, next_deadline_ms = ? \
     WHERE run_key = ? AND scheduled_event_id = ? AND version = ?";

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
                .prepare_cached(DELETE_ACTIVITY_SQL)?
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
    let row = record.to_row();
    let Some(expected) = expected else {
        connection
            .prepare_cached(INSERT_ACTIVITY_SQL)?
            .execute(params![
                run_key,
                row.scheduled_event_id,
                row.version,
                row.activity_id,
                row.task_queue,
                row.activity_type,
                row.input,
                row.policy,
                row.schedule_to_close_ms,
                row.schedule_to_start_ms,
                row.start_to_close_ms,
                row.heartbeat_ms,
                row.attempt,
                row.scheduled_ms,
                row.state,
                row.ready_ms,
                row.token,
                row.started_ms,
                row.last_heartbeat_ms,
                row.heartbeat_details,
                row.last_failure,
                row.next_deadline_ms,
            ])?;
        return Ok(());
    };
    let changed = connection
        .prepare_cached(UPDATE_ACTIVITY_SQL)?
        .execute(params![
            row.version,
            row.attempt,
            row.state,
            row.ready_ms,
            row.token,
            row.started_ms,
            row.last_heartbeat_ms,
            row.heartbeat_details,
            row.last_failure,
            row.next_deadline_ms,
            run_key,
            row.scheduled_event_id,
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

#[cfg(test)]
mod tests {
    use mainspring_core::history::Payload;
    use mainspring_core::rules::operations;
    use mainspring_core::rules::RulesConfig;

    use super::*;
    use crate::open::open;
    use crate::operation::NewRun;
    use crate::runs::start_workflow;

    fn count(connection: &Connection, sql: &str) -> i64 {
        connection.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn a_plan_decided_on_a_record_that_changed_since_is_refused_and_writes_nothing() {
        let folder = std::env::temp_dir().join(format!("mainspring-cas-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("cas.db");
        let mut store = open(
            path.to_str().unwrap(),
            1_000,
            "NORMAL",
            RulesConfig::default(),
            "test",
        )
        .unwrap();
        let run = NewRun {
            workflow_id: "w".into(),
            run_id: "r".into(),
            workflow_type: "t".into(),
            task_queue: "q".into(),
        };
        start_workflow(&mut store, 1, &run, b"null", None).unwrap();
        let (connection, mut context) = store.split(2);
        let loaded = load_current_run(connection, "w").unwrap();
        let plan =
            operations::signal_workflow(&mut context, loaded.clone(), "go", Payload::default())
                .unwrap();
        // Another writer (another process) changes the run after it was loaded.
        connection
            .execute("UPDATE runs SET version = version + 1", [])
            .unwrap();
        let refused = persist(connection, Some(loaded.key), &plan).unwrap_err();
        assert!(
            matches!(refused, StoreError::Core(CoreError::Conflict(_))),
            "{refused}"
        );
        // The caller's transaction is undone on that error; here nothing was written before the
        // fenced statement, and nothing after it.
        assert_eq!(count(connection, "SELECT COUNT(*) FROM events"), 1);
        // Decided on the record as it is now, the same operation goes in.
        let fresh = load_current_run(connection, "w").unwrap();
        let plan =
            operations::signal_workflow(&mut context, fresh.clone(), "go", Payload::default())
                .unwrap();
        persist(connection, Some(fresh.key), &plan).unwrap();
        assert_eq!(count(connection, "SELECT COUNT(*) FROM events"), 2);
    }

    #[test]
    fn the_database_refuses_a_second_open_run_of_a_workflow_id() {
        let folder = std::env::temp_dir().join(format!("mainspring-unique-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("unique.db");
        let store = open(
            path.to_str().unwrap(),
            1_000,
            "NORMAL",
            RulesConfig::default(),
            "test",
        )
        .unwrap();
        let insert = "INSERT INTO runs (workflow_id, run_id, workflow_type, task_queue, status, \
                      history_length, started_ms) VALUES ('w', ?, 't', 'q', ?, 1, 0)";
        store
            .connection
            .execute(insert, ["closed", "COMPLETED"])
            .unwrap();
        store
            .connection
            .execute(insert, ["open", "RUNNING"])
            .unwrap();
        let refused = store
            .connection
            .execute(insert, ["second", "RUNNING"])
            .unwrap_err();
        assert!(refused.to_string().contains("UNIQUE"), "{refused}");
    }
}
