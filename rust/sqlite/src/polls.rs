//! What idle workers and waiting clients ask for: polls for ready tasks, queries to answer,
//! runs closed by other processes.
//!
//! A poll first applies the deadlines that are due (the tick: timers fire, expired leases and
//! timed-out attempts move on), then leases the oldest ready tasks. The rules decide each
//! lease; the indexes only find the candidates.

use mainspring_core::history::join_event_rows;
use mainspring_core::rules::{operations, ActivityTaskLease, ActivityWrite, RunIdentity};
use rusqlite::{params, Connection, OptionalExtension};

use crate::deadlines::tick;
use crate::error::StoreResult;
use crate::open::Store;
use crate::operation::{Answer, QueryRow, WorkflowLease};
use crate::records::{
    activity_columns, activity_from_row, load_current_run, persist, run_columns, run_from_row,
    ACTIVITY_COLUMN_COUNT,
};
use crate::runs::{event_rows, workflow_lease};

/// A queue's ready workflow tasks, oldest first. The state is spelled out, not bound: only
/// then may SQLite use the partial index (`runs_ready`).
pub const READY_WORKFLOW_TASKS_SQL: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE task_queue = ? AND task_state = 1 AND task_ready_ms <= ? \
     ORDER BY task_ready_ms, run_key LIMIT ?"
);
/// A queue's ready attempts with their runs' identities, oldest first (`activities_ready`).
pub const READY_ACTIVITY_TASKS_SQL: &str = concat!(
    "SELECT ",
    activity_columns!(),
    ", a.run_key, r.workflow_id, r.run_id, r.workflow_type, r.task_queue \
     FROM activities a JOIN runs r USING (run_key) \
     WHERE a.task_queue = ? AND a.state = 0 AND a.ready_ms <= ? ORDER BY a.ready_ms LIMIT ?"
);
pub const INSERT_QUERY_SQL: &str = "INSERT INTO queries (task_queue, workflow_id, run_id, name, \
     input, created_ms) VALUES (?, ?, ?, ?, ?, ?) RETURNING query_id";
pub const TAKE_QUERY_SQL: &str = "UPDATE queries SET state = 1 WHERE query_id = (SELECT query_id \
     FROM queries WHERE task_queue = ? AND state = 0 ORDER BY query_id LIMIT 1) AND state = 0 \
     RETURNING query_id, workflow_id, run_id, name, input";
pub const ANSWER_QUERY_SQL: &str =
    "UPDATE queries SET state = 2, result = ?, error = ? WHERE query_id = ? AND state = 1";
pub const READ_ANSWER_SQL: &str = "SELECT state, result, error FROM queries WHERE query_id = ?";
pub const DELETE_QUERY_SQL: &str = "DELETE FROM queries WHERE query_id = ?";

/// Applies due deadlines, then leases up to `max_tasks` ready workflow tasks of `task_queue`,
/// oldest first, each with the events its run's cached instance has not seen: `(deadlines
/// applied, leases)`.
pub fn poll_workflow_tasks(
    store: &mut Store,
    now: i64,
    task_queue: &str,
    lease_ms: i64,
    max_tasks: i64,
) -> StoreResult<(usize, Vec<WorkflowLease>)> {
    let applied = tick(store, now)?;
    let (connection, mut context) = store.split(now);
    let candidates = connection
        .prepare_cached(READY_WORKFLOW_TASKS_SQL)?
        .query_map(params![task_queue, now, max_tasks], run_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut leases = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let run = candidate?;
        let key = run.key;
        let Ok(plan) = operations::lease_workflow_task(&mut context, run, lease_ms.max(0) as u64)
        else {
            continue;
        };
        persist(connection, Some(key), &plan)?;
        let record = plan.record();
        let tail = event_rows(
            connection,
            key,
            record.tail_start as i64,
            record.history_length as i64,
        )?;
        leases.extend(workflow_lease(record, join_event_rows(&tail)));
    }
    Ok((applied, leases))
}

/// Applies due deadlines, then leases up to `max_tasks` ready activity attempts of
/// `task_queue`: `(deadlines applied, leases)`.
pub fn poll_activity_tasks(
    store: &mut Store,
    now: i64,
    task_queue: &str,
    max_tasks: i64,
) -> StoreResult<(usize, Vec<ActivityTaskLease>)> {
    let applied = tick(store, now)?;
    let (connection, mut context) = store.split(now);
    let candidates = connection
        .prepare_cached(READY_ACTIVITY_TASKS_SQL)?
        .query_map(params![task_queue, now, max_tasks], |row| {
            let extra = ACTIVITY_COLUMN_COUNT;
            let identity = RunIdentity {
                workflow_id: row.get(extra + 1)?,
                run_id: row.get(extra + 2)?,
                workflow_type: row.get(extra + 3)?,
                task_queue: row.get(extra + 4)?,
            };
            Ok((activity_from_row(row)?, row.get::<_, i64>(extra)?, identity))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut leases = Vec::with_capacity(candidates.len());
    for (activity, run_key, identity) in candidates {
        let Ok(plan) = operations::lease_activity_task(&mut context, activity?) else {
            continue;
        };
        persist(connection, Some(run_key), &plan)?;
        for write in &plan.activities {
            if let ActivityWrite::Update { record, .. } = write {
                leases.extend(ActivityTaskLease::of(run_key, &identity, record));
            }
        }
    }
    Ok((applied, leases))
}

/// Queues a query of the workflow id's current run for a worker of its task queue.
pub fn submit_query(
    connection: &Connection,
    now: i64,
    workflow_id: &str,
    name: &str,
    input: &[u8],
) -> StoreResult<i64> {
    let run = load_current_run(connection, workflow_id)?;
    Ok(connection.prepare_cached(INSERT_QUERY_SQL)?.query_row(
        params![
            run.identity.task_queue,
            workflow_id,
            run.identity.run_id,
            name,
            input,
            now
        ],
        |row| row.get(0),
    )?)
}

pub fn take_query(connection: &Connection, task_queue: &str) -> StoreResult<Option<QueryRow>> {
    let row: Option<QueryRow> = connection
        .prepare_cached(TAKE_QUERY_SQL)?
        .query_row([task_queue], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()?;
    Ok(row)
}

pub fn answer_query(
    connection: &Connection,
    query_id: i64,
    result: Option<&[u8]>,
    error: Option<&str>,
) -> StoreResult<()> {
    connection
        .prepare_cached(ANSWER_QUERY_SQL)?
        .execute(params![result, error, query_id])?;
    Ok(())
}

/// The answer if there is one (the row is then deleted); with `give_up`, deletes an
/// unanswered query so no worker answers it late.
pub fn read_answer(
    connection: &Connection,
    query_id: i64,
    give_up: bool,
) -> StoreResult<Option<Answer>> {
    let row: Option<(i64, Option<Vec<u8>>, Option<String>)> = connection
        .prepare_cached(READ_ANSWER_SQL)?
        .query_row([query_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((state, result, error)) = row else {
        return Ok(None);
    };
    let answered = state == 2;
    if answered || give_up {
        connection
            .prepare_cached(DELETE_QUERY_SQL)?
            .execute([query_id])?;
    }
    Ok(answered.then_some((result, error)))
}

/// Moves whenever another connection (another process) commits to the file.
pub fn data_version(connection: &Connection) -> StoreResult<i64> {
    Ok(connection.query_row("PRAGMA data_version", [], |row| row.get(0))?)
}
