//! Runs: starting one, what clients send it (signals, cancellation, termination), and reads.

use mainspring_core::history::{encode_event_row, join_event_rows, Payload};
use mainspring_core::rules::operations::{self, EagerWorkflowTask};
use mainspring_core::rules::{Plan, RunIdentity, RunRecord, WorkflowTaskLease};
use mainspring_core::CoreError;
use rusqlite::{params, Connection, OptionalExtension, ToSql};

use crate::error::StoreResult;
use crate::open::Store;
use crate::operation::{NewRun, RunSummary, WorkflowLease};
use crate::records::{
    load_current_run, load_run_by_id, persist, persist_rows, run_columns, run_from_row,
};

// A page of runs in key order, after a key (keyset pagination: a page costs its own rows,
// however many came before). `?1` the key, `?2` the page size, then the filters given, in
// this order: `status`, `workflow_type`. Each filter has an index whose entries end with the
// key (`runs_by_status`, `runs_by_type`), so a filtered page is one range of it.
pub const LIST_RUNS_SQL: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE run_key > ?1 ORDER BY run_key LIMIT ?2"
);
pub const LIST_RUNS_OF_STATUS_SQL: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE status = ?3 AND run_key > ?1 ORDER BY run_key LIMIT ?2"
);
pub const LIST_RUNS_OF_TYPE_SQL: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE workflow_type = ?3 AND run_key > ?1 ORDER BY run_key LIMIT ?2"
);
pub const LIST_RUNS_OF_STATUS_AND_TYPE_SQL: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE status = ?3 AND workflow_type = ?4 AND run_key > ?1 \
     ORDER BY run_key LIMIT ?2"
);
pub const EVENT_ROWS_SQL: &str =
    "SELECT row FROM events WHERE run_key = ? AND event_id BETWEEN ? AND ? ORDER BY event_id";
pub const CLOSING_EVENT_SQL: &str = "SELECT r.status, e.row FROM runs r LEFT JOIN events e \
     ON e.run_key = r.run_key AND e.event_id = r.history_length WHERE r.run_id = ?";
pub const CLOSING_EVENTS_SQL: &str = "SELECT e.row FROM runs r JOIN events e \
     ON e.run_key = r.run_key AND e.event_id = r.history_length \
     WHERE r.run_id = ? AND r.status != 'RUNNING'";

pub fn identity_of(run: &NewRun) -> RunIdentity {
    RunIdentity {
        workflow_id: run.workflow_id.clone(),
        run_id: run.run_id.clone(),
        workflow_type: run.workflow_type.clone(),
        task_queue: run.task_queue.clone(),
    }
}

/// The lease a persisted run's record holds, with `tail`: the encoded events from its
/// `tail_start` on. None unless its task is leased.
pub fn workflow_lease(record: &RunRecord, tail: Vec<u8>) -> Option<WorkflowLease> {
    WorkflowTaskLease::of(record).map(|lease| WorkflowLease { lease, tail })
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
    let (connection, mut context) = store.split(now);
    let eager = eager_lease_ms.map(|lease_ms| EagerWorkflowTask {
        task_queue: &run.task_queue,
        lease_ms: lease_ms.max(0) as u64,
    });
    let plan = operations::start_workflow(
        &mut context,
        identity_of(run),
        Payload(input.to_vec()),
        eager,
    );
    let (key, rows) = persist_rows(connection, None, &plan)?;
    let mut record = plan.record().clone();
    record.key = key;
    Ok(workflow_lease(&record, join_event_rows(&rows)))
}

/// Decides on the workflow id's current run and persists what was decided.
fn on_current_run(
    store: &mut Store,
    now: i64,
    workflow_id: &str,
    decide: impl FnOnce(&mut operations::Context<'_>, RunRecord) -> StoreResult<Plan>,
) -> StoreResult<Plan> {
    let (connection, mut context) = store.split(now);
    let run = load_current_run(connection, workflow_id)?;
    let key = run.key;
    let plan = decide(&mut context, run)?;
    if !plan.is_empty() {
        persist(connection, Some(key), &plan)?;
    }
    Ok(plan)
}

pub fn signal_workflow(
    store: &mut Store,
    now: i64,
    workflow_id: &str,
    signal_name: &str,
    input: &[u8],
) -> StoreResult<()> {
    on_current_run(store, now, workflow_id, |context, run| {
        Ok(operations::signal_workflow(
            context,
            run,
            signal_name,
            Payload(input.to_vec()),
        )?)
    })
    .map(drop)
}

pub fn request_cancel_workflow(
    store: &mut Store,
    now: i64,
    workflow_id: &str,
    reason: &str,
) -> StoreResult<()> {
    on_current_run(store, now, workflow_id, |context, run| {
        Ok(operations::request_cancel_workflow(context, run, reason)?)
    })
    .map(drop)
}

/// Returns the run's id and its closing event, encoded as a history.
pub fn terminate_workflow(
    store: &mut Store,
    now: i64,
    workflow_id: &str,
    reason: &str,
) -> StoreResult<(String, Vec<u8>)> {
    let plan = on_current_run(store, now, workflow_id, |context, run| {
        Ok(operations::terminate_workflow(context, run, reason)?)
    })?;
    let closing = plan.last_event().map(encode_event_row).unwrap_or_default();
    Ok((
        plan.record().identity.run_id.clone(),
        join_event_rows(&[closing]),
    ))
}

fn run_row(record: RunRecord) -> RunSummary {
    let workflow_task_leased = record.workflow_task_is_leased();
    RunSummary {
        run_key: record.key,
        workflow_id: record.identity.workflow_id.clone(),
        run_id: record.identity.run_id.clone(),
        workflow_type: record.identity.workflow_type.clone(),
        task_queue: record.identity.task_queue.clone(),
        status: record.status.name(),
        history_length: record.history_length as i64,
        started_ms: record.started_ms,
        closed_ms: record.closed_ms,
        last_task_failure: record.last_task_failure,
        task_failures: record.task_failures,
        dropped_signals: record.dropped_signals,
        workflow_task_leased,
        lease_identity: None,
    }
}

pub const LEASE_IDENTITY_SQL: &str = "SELECT lease_identity FROM runs WHERE run_key = ?";

/// The run's summary, with the identity of the worker that holds its workflow task.
pub fn describe_workflow(connection: &Connection, workflow_id: &str) -> StoreResult<RunSummary> {
    let mut summary = load_current_run(connection, workflow_id).map(run_row)?;
    if summary.workflow_task_leased {
        summary.lease_identity = connection
            .prepare_cached(LEASE_IDENTITY_SQL)?
            .query_row([summary.run_key], |row| row.get(0))?;
    }
    Ok(summary)
}

/// Up to `page_size` runs whose key is greater than `after_run_key` (None: from the first),
/// in key order, of `status` and `workflow_type` when they are given.
pub fn list_workflows(
    connection: &Connection,
    after_run_key: Option<i64>,
    page_size: i64,
    status: Option<&str>,
    workflow_type: Option<&str>,
) -> StoreResult<Vec<RunSummary>> {
    let after = after_run_key.unwrap_or(i64::MIN);
    // A negative LIMIT is no limit to SQLite.
    let page_size = page_size.max(0);
    let mut values: Vec<&dyn ToSql> = vec![&after, &page_size];
    values.extend(status.as_ref().map(|status| status as &dyn ToSql));
    values.extend(workflow_type.as_ref().map(|name| name as &dyn ToSql));
    let sql = match (status, workflow_type) {
        (None, None) => LIST_RUNS_SQL,
        (Some(_), None) => LIST_RUNS_OF_STATUS_SQL,
        (None, Some(_)) => LIST_RUNS_OF_TYPE_SQL,
        (Some(_), Some(_)) => LIST_RUNS_OF_STATUS_AND_TYPE_SQL,
    };
    let mut statement = connection.prepare_cached(sql)?;
    let records = statement
        .query_map(&values[..], run_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    records
        .into_iter()
        .map(|record| record.map(run_row))
        .collect()
}

pub fn read_history(
    connection: &Connection,
    run_id: &str,
    from_event_id: i64,
) -> StoreResult<Vec<u8>> {
    let run = load_run_by_id(connection, run_id)?;
    let rows = event_rows(
        connection,
        run.key,
        from_event_id,
        run.history_length as i64,
    )?;
    Ok(join_event_rows(&rows))
}

/// The rows of events `from..=to`.
pub fn event_rows(
    connection: &Connection,
    run_key: i64,
    from_event_id: i64,
    to_event_id: i64,
) -> StoreResult<Vec<Vec<u8>>> {
    let mut statement = connection.prepare_cached(EVENT_ROWS_SQL)?;
    let rows = statement
        .query_map(params![run_key, from_event_id, to_event_id], |row| {
            row.get::<_, Vec<u8>>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// A closed run's last event (the one that closed it), encoded as a history; None while the
/// run runs.
pub fn closing_event(connection: &Connection, run_id: &str) -> StoreResult<Option<Vec<u8>>> {
    let found: Option<(String, Option<Vec<u8>>)> = connection
        .prepare_cached(CLOSING_EVENT_SQL)?
        .query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match found {
        None => Err(CoreError::WorkflowNotFound(format!("run {run_id}")).into()),
        Some((status, _)) if status == "RUNNING" => Ok(None),
        Some((_, row)) => Ok(Some(join_event_rows(&[row.unwrap_or_default()]))),
    }
}

/// `(run id, closing event)` for those of `run_ids` that have closed.
pub fn closing_events(
    connection: &Connection,
    run_ids: &[String],
) -> StoreResult<Vec<(String, Vec<u8>)>> {
    let mut statement = connection.prepare_cached(CLOSING_EVENTS_SQL)?;
    let mut closed = Vec::new();
    for run_id in run_ids {
        let row: Option<Vec<u8>> = statement.query_row([run_id], |row| row.get(0)).optional()?;
        if let Some(row) = row {
            closed.push((run_id.clone(), join_event_rows(&[row])));
        }
    }
    Ok(closed)
}
