//! Runs and their events: starting a run, appending an inbound event that wakes the run's
//! workflow task, a closed run's closing event.

use mainspring_core::history::{
    encode_event_row, join_event_rows, Event, EventAttributes, Payload, WorkflowStartedAttributes,
};
use mainspring_core::CoreError;
use rusqlite::{named_params, params, Connection, OptionalExtension};

use crate::error::StoreResult;
use crate::open::Store;
use crate::operation::WorkflowLease;
use crate::{LEASED, QUEUED};

/// The identity of a run being started.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
}

const INSERT_EVENT: &str = "INSERT INTO events (run_key, event_id, kind, row) VALUES (?, ?, ?, ?)";

/// Stores encoded events: `(event id, kind, row)`.
pub fn insert_events(
    connection: &Connection,
    run_key: i64,
    events: &[(i64, &str, &[u8])],
) -> StoreResult<()> {
    let mut statement = connection.prepare_cached(INSERT_EVENT)?;
    for (event_id, kind, row) in events {
        statement.execute(params![run_key, event_id, kind, row])?;
    }
    Ok(())
}

/// One event encoded as a row.
pub fn encode_row(event_id: i64, now: i64, attributes: EventAttributes) -> Vec<u8> {
    encode_event_row(&Event {
        event_id: event_id as u64,
        timestamp_ms: now,
        attributes,
    })
}

/// Workflow ids are unique among running runs (a closed one's id may be reused).
pub fn refuse_running_duplicate(connection: &Connection, workflow_id: &str) -> StoreResult<()> {
    let status: Option<String> = connection
        .prepare_cached(
            "SELECT status FROM runs WHERE workflow_id = ? ORDER BY run_key DESC LIMIT 1",
        )?
        .query_row([workflow_id], |row| row.get(0))
        .optional()?;
    if status.as_deref() == Some("RUNNING") {
        return Err(CoreError::WorkflowAlreadyStarted(workflow_id.to_string()).into());
    }
    Ok(())
}

/// Records the run with its first event and queues its first workflow task, or, with
/// `eager_lease_ms`, leases that task to the caller and returns the lease.
pub fn start_workflow(
    store: &mut Store,
    now: i64,
    run: &NewRun,
    input: &[u8],
    eager_lease_ms: Option<i64>,
) -> StoreResult<Option<WorkflowLease>> {
    let connection = &store.connection;
    refuse_running_duplicate(connection, &run.workflow_id)?;
    let token = eager_lease_ms.map(|_| store.tokens.next());
    // The run starts with its first event already counted: two statements, not three.
    let run_key = connection
        .prepare_cached(
            "INSERT INTO runs (workflow_id, run_id, workflow_type, task_queue, status, \
             history_length, started_ms, task_state, task_ready_ms, task_token, \
             task_deadline_ms) VALUES (?, ?, ?, ?, 'RUNNING', 1, ?, ?, ?, ?, ?) \
             RETURNING run_key",
        )?
        .query_row(
            params![
                run.workflow_id,
                run.run_id,
                run.workflow_type,
                run.task_queue,
                now,
                if token.is_some() { LEASED } else { QUEUED },
                now,
                token,
                eager_lease_ms.map(|lease_ms| now + lease_ms),
            ],
            |row| row.get::<_, i64>(0),
        )?;
    let kind = "WorkflowStarted";
    let row = encode_row(
        1,
        now,
        EventAttributes::WorkflowStarted(Box::new(WorkflowStartedAttributes {
            workflow_type: run.workflow_type.clone(),
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
            task_queue: run.task_queue.clone(),
            input: Payload(input.to_vec()),
        })),
    );
    insert_events(connection, run_key, &[(1, kind, &row)])?;
    Ok(token.map(|token| WorkflowLease {
        run_key,
        workflow_id: run.workflow_id.clone(),
        run_id: run.run_id.clone(),
        workflow_type: run.workflow_type.clone(),
        history_length: 1,
        token,
        tail_start: 1,
        tail: join_event_rows(&[row]),
    }))
}

/// Appends one inbound event and wakes the run's workflow task: queues it if the run is idle;
/// with `eager_queue`, leases it to the caller instead when the run's tasks go there and no
/// task is leased or waiting for a retry. Returns the event's id, its row and the lease.
pub fn append_and_wake(
    store: &mut Store,
    run_key: i64,
    now: i64,
    attributes: EventAttributes,
    eager_queue: Option<&str>,
    lease_ms: i64,
) -> StoreResult<(i64, Vec<u8>, Option<WorkflowLease>)> {
    let token = store.tokens.next();
    let connection = &store.connection;
    // The same statement as the Python operations' `_APPEND_AND_WAKE`.
    let (event_id, task_token, tail_start, workflow_id, run_id, workflow_type) = connection
        .prepare_cached(
            "UPDATE runs SET history_length = history_length + 1, \
             task_token = CASE WHEN status = 'RUNNING' AND task_queue = :queue AND (task_state = 0 \
             OR (task_state = 1 AND task_ready_ms <= :now)) THEN :token ELSE task_token END, \
             task_deadline_ms = CASE WHEN status = 'RUNNING' AND task_queue = :queue AND \
             (task_state = 0 OR (task_state = 1 AND task_ready_ms <= :now)) THEN :deadline \
             ELSE task_deadline_ms END, \
             task_ready_ms = CASE WHEN status = 'RUNNING' AND task_state = 0 THEN :now \
             ELSE task_ready_ms END, \
             task_state = CASE WHEN status = 'RUNNING' AND task_queue = :queue AND \
             (task_state = 0 OR (task_state = 1 AND task_ready_ms <= :now)) THEN 2 \
             WHEN status = 'RUNNING' AND task_state = 0 THEN 1 ELSE task_state END \
             WHERE run_key = :run_key \
             RETURNING history_length, task_token, tail_start, workflow_id, run_id, \
             workflow_type",
        )?
        .query_row(
            named_params! {
                ":queue": eager_queue,
                ":now": now,
                ":token": token,
                ":deadline": now + lease_ms,
                ":run_key": run_key,
            },
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            },
        )?;
    let kind = attributes.kind();
    let row = encode_row(event_id, now, attributes);
    insert_events(connection, run_key, &[(event_id, kind, &row)])?;
    if eager_queue.is_none() || task_token != Some(token) {
        return Ok((event_id, row, None));
    }
    let tail = if tail_start < event_id {
        join_event_rows(&event_rows(connection, run_key, tail_start, event_id)?)
    } else {
        join_event_rows(std::slice::from_ref(&row))
    };
    let lease = WorkflowLease {
        run_key,
        workflow_id,
        run_id,
        workflow_type,
        history_length: event_id,
        token,
        tail_start,
        tail,
    };
    Ok((event_id, row, Some(lease)))
}

/// The rows of events `from..=to`.
pub fn event_rows(
    connection: &Connection,
    run_key: i64,
    from_event_id: i64,
    to_event_id: i64,
) -> StoreResult<Vec<Vec<u8>>> {
    let mut statement = connection.prepare_cached(
        "SELECT row FROM events WHERE run_key = ? AND event_id BETWEEN ? AND ? ORDER BY event_id",
    )?;
    let rows = statement
        .query_map(params![run_key, from_event_id, to_event_id], |row| {
            row.get::<_, Vec<u8>>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// A closed run's activities and timers: no task of a closed run is handed out.
pub fn drop_pending_work(connection: &Connection, run_key: i64) -> StoreResult<()> {
    connection
        .prepare_cached("DELETE FROM activities WHERE run_key = ?")?
        .execute([run_key])?;
    connection
        .prepare_cached("DELETE FROM timers WHERE run_key = ?")?
        .execute([run_key])?;
    Ok(())
}

/// A closed run's last event (the one that closed it), encoded as a history; None while the
/// run runs.
pub fn closing_event(connection: &Connection, run_id: &str) -> StoreResult<Option<Vec<u8>>> {
    let found: Option<(String, Option<Vec<u8>>)> = connection
        .prepare_cached(
            "SELECT r.status, e.row FROM runs r LEFT JOIN events e \
             ON e.run_key = r.run_key AND e.event_id = r.history_length WHERE r.run_id = ?",
        )?
        .query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match found {
        None => Err(CoreError::WorkflowNotFound(format!("run {run_id}")).into()),
        Some((status, _)) if status == "RUNNING" => Ok(None),
        Some((_, row)) => Ok(Some(join_event_rows(&[row.unwrap_or_default()]))),
    }
}
