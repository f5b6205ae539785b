//! What idle workers and waiting clients ask for: polls for ready tasks, queries to answer,
//! the next wakeup, runs closed by other processes.
//!
//! A poll first checks whether any deadline is due (a timer to fire, a lease or an activity
//! timeout to apply). Applying deadlines is the Python operations' `tick` (rare, and rich in
//! rules): when one is due the poll leases nothing and says so, the caller runs `tick`, and
//! polls again without the check.

use mainspring_core::history::join_event_rows;
use rusqlite::{params, Connection, OptionalExtension};

use crate::activity_tasks::attempt_deadline;
use crate::error::StoreResult;
use crate::open::Store;
use crate::operation::{ActivityLease, WorkflowLease};
use crate::runs::event_rows;
use crate::ACTIVITY_RUNNING;

/// Whether a timer, a workflow task's lease or an activity deadline is due at `now`.
fn deadline_due(connection: &Connection, now: i64) -> StoreResult<bool> {
    Ok(connection
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM timers WHERE fire_ms <= ?1) \
             OR EXISTS (SELECT 1 FROM runs WHERE task_state = 2 AND task_deadline_ms < ?1) \
             OR EXISTS (SELECT 1 FROM activities WHERE next_deadline_ms <= ?1)",
        )?
        .query_row([now], |row| row.get(0))?)
}

/// Leases up to `max_tasks` ready workflow tasks of `task_queue`, oldest first: `(a deadline
/// is due, leases)`; nothing is leased when a deadline is due (and `check_due`).
pub fn poll_workflow_tasks(
    store: &mut Store,
    now: i64,
    task_queue: &str,
    lease_ms: i64,
    max_tasks: i64,
    check_due: bool,
) -> StoreResult<(bool, Vec<WorkflowLease>)> {
    let connection = &store.connection;
    if check_due && deadline_due(connection, now)? {
        return Ok((true, Vec::new()));
    }
    // One statement leases the whole batch; the fencing tokens are random, drawn by SQLite's
    // generator, one per row. The state is spelled out, not bound: only then may SQLite use
    // the partial index.
    let mut leased = connection
        .prepare_cached(
            "UPDATE runs SET task_state = 2, task_deadline_ms = ?, \
             task_token = (random() & 4611686018427387903) + 1 WHERE run_key IN (\
             SELECT run_key FROM runs WHERE task_queue = ? AND task_state = 1 \
             AND task_ready_ms <= ? ORDER BY task_ready_ms LIMIT ?) \
             RETURNING task_ready_ms, run_key, workflow_id, run_id, workflow_type, \
             history_length, task_token, tail_start",
        )?
        .query_map(params![now + lease_ms, task_queue, now, max_tasks], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                WorkflowLease {
                    run_key: row.get(1)?,
                    workflow_id: row.get(2)?,
                    run_id: row.get(3)?,
                    workflow_type: row.get(4)?,
                    history_length: row.get(5)?,
                    token: row.get(6)?,
                    tail_start: row.get(7)?,
                    tail: Vec::new(),
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    leased.sort_by_key(|(ready_ms, lease)| (*ready_ms, lease.run_key)); // oldest first
    let mut leases = Vec::with_capacity(leased.len());
    for (_, mut lease) in leased {
        // The events the run's cached instance has not seen.
        let tail = event_rows(
            connection,
            lease.run_key,
            lease.tail_start,
            lease.history_length,
        )?;
        lease.tail = join_event_rows(&tail);
        leases.push(lease);
    }
    Ok((false, leases))
}

/// Leases up to `max_tasks` ready activity attempts of `task_queue`: `(a deadline is due,
/// leases)`, as [`poll_workflow_tasks`].
pub fn poll_activity_tasks(
    store: &mut Store,
    now: i64,
    task_queue: &str,
    max_tasks: i64,
    check_due: bool,
) -> StoreResult<(bool, Vec<ActivityLease>)> {
    if check_due && deadline_due(&store.connection, now)? {
        return Ok((true, Vec::new()));
    }
    let ready = store
        .connection
        .prepare_cached(
            "SELECT a.activity_id, r.workflow_id, r.run_id, a.activity_type, a.input, \
             a.attempt, a.heartbeat_details, a.scheduled_ms, a.start_to_close_ms, \
             a.schedule_to_close_ms, a.close_deadline_ms, a.heartbeat_ms, \
             a.scheduled_event_id FROM activities a JOIN runs r USING (run_key) \
             WHERE a.task_queue = ? AND a.state = 0 AND a.ready_ms <= ? \
             ORDER BY a.ready_ms LIMIT ?",
        )?
        .query_map(params![task_queue, now, max_tasks], |row| {
            let start_to_close: Option<i64> = row.get(8)?;
            let schedule_to_close: Option<i64> = row.get(9)?;
            let lease = ActivityLease {
                activity_id: row.get(0)?,
                token: 0,
                workflow_id: row.get(1)?,
                run_id: row.get(2)?,
                activity_type: row.get(3)?,
                input: row.get(4)?,
                attempt: row.get(5)?,
                heartbeat_details: row.get(6)?,
                scheduled_ms: row.get(7)?,
                started_ms: now,
                deadline_ms: row.get(10)?,
                heartbeat_ms: row.get(11)?,
                scheduled_event_id: row.get(12)?,
            };
            Ok((
                lease,
                attempt_deadline(now, start_to_close, schedule_to_close),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut leases = Vec::with_capacity(ready.len());
    for (mut lease, per_attempt) in ready {
        lease.token = store.tokens.next();
        store
            .connection
            .prepare_cached(
                "UPDATE activities SET state = ?, token = ?, started_ms = ?, \
                 attempt_deadline_ms = ?, heartbeat_deadline_ms = ?, start_deadline_ms = NULL \
                 WHERE activity_id = ?",
            )?
            .execute(params![
                ACTIVITY_RUNNING,
                lease.token,
                now,
                per_attempt,
                lease.heartbeat_ms.map(|ms| now + ms),
                lease.activity_id,
            ])?;
        // The attempt's deadline: the earlier of its own and the whole activity's.
        lease.deadline_ms = [per_attempt, lease.deadline_ms].into_iter().flatten().min();
        leases.push(lease);
    }
    Ok((false, leases))
}

/// A query waiting for a worker of `task_queue`, taken: `(query id, workflow id, run id,
/// name, input)`.
pub type QueryRow = (i64, String, String, String, Vec<u8>);

pub fn take_query(connection: &Connection, task_queue: &str) -> StoreResult<Option<QueryRow>> {
    let row: Option<QueryRow> = connection
        .prepare_cached(
            "SELECT query_id, workflow_id, run_id, name, input FROM queries \
             WHERE task_queue = ? AND state = 0 ORDER BY query_id LIMIT 1",
        )?
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
    if let Some((query_id, ..)) = &row {
        connection
            .prepare_cached("UPDATE queries SET state = 1 WHERE query_id = ?")?
            .execute([query_id])?;
    }
    Ok(row)
}

/// The earliest deadline, or ready time still ahead, that a poll would act on.
pub fn next_wakeup_ms(connection: &Connection, now: i64) -> StoreResult<Option<i64>> {
    Ok(connection
        .prepare_cached(
            "SELECT min(coalesce((SELECT MIN(fire_ms) FROM timers), 9223372036854775807), \
             coalesce((SELECT MIN(task_deadline_ms) FROM runs WHERE task_state = 2), \
             9223372036854775807), \
             coalesce((SELECT MIN(task_ready_ms) FROM runs WHERE task_state = 1 \
             AND task_ready_ms > ?1), 9223372036854775807), \
             coalesce((SELECT MIN(ready_ms) FROM activities WHERE state = 0 \
             AND ready_ms > ?1), 9223372036854775807), \
             (SELECT coalesce(MIN(next_deadline_ms), 9223372036854775807) FROM activities))",
        )?
        .query_row([now], |row| row.get::<_, i64>(0))
        .map(|earliest| (earliest != i64::MAX).then_some(earliest))?)
}

/// Moves whenever another connection (another process) commits to the file.
pub fn data_version(connection: &Connection) -> StoreResult<i64> {
    Ok(connection.query_row("PRAGMA data_version", [], |row| row.get(0))?)
}

/// `(run id, closing event)` for those of `run_ids` that have closed.
pub fn closing_events(
    connection: &Connection,
    run_ids: &[String],
) -> StoreResult<Vec<(String, Vec<u8>)>> {
    let mut statement = connection.prepare_cached(
        "SELECT e.row FROM runs r JOIN events e \
         ON e.run_key = r.run_key AND e.event_id = r.history_length \
         WHERE r.run_id = ? AND r.status != 'RUNNING'",
    )?;
    let mut closed = Vec::new();
    for run_id in run_ids {
        let row: Option<Vec<u8>> = statement.query_row([run_id], |row| row.get(0)).optional()?;
        if let Some(row) = row {
            closed.push((run_id.clone(), join_event_rows(&[row])));
        }
    }
    Ok(closed)
}
