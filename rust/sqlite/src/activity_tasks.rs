//! Activity attempts: what their workers report (a result, a failure, a heartbeat).

use mainspring_core::history::{Failure, Payload};
use mainspring_core::rules::operations::{self, EagerWorkflowTask};

use crate::error::StoreResult;
use crate::open::Store;
use crate::operation::{HeldAttempt, WorkflowLease};
use crate::records::{load_held, load_held_activity, persist};
use crate::runs::{event_rows, workflow_lease};
use mainspring_core::history::join_event_rows;

/// Records the result. With `eager_queue`, also leases the workflow task it woke, if that
/// run's tasks go to `eager_queue` (the caller advances it at once).
pub fn complete_activity_task(
    store: &mut Store,
    now: i64,
    attempt: HeldAttempt,
    result: &[u8],
    eager_queue: Option<&str>,
    eager_lease_ms: i64,
) -> StoreResult<Option<WorkflowLease>> {
    let (connection, mut context) = store.split(now);
    let (run, activity) = load_held(connection, attempt)?;
    let eager = eager_queue.map(|task_queue| EagerWorkflowTask {
        task_queue,
        lease_ms: eager_lease_ms.max(0) as u64,
    });
    let (plan, leased) = operations::complete_activity_task(
        &mut context,
        run,
        activity,
        attempt.token,
        Payload(result.to_vec()),
        eager,
    )?;
    persist(connection, Some(attempt.run_key), &plan)?;
    if !leased {
        return Ok(None);
    }
    // The events the run's cached instance has not seen, for the caller to advance it.
    let record = plan.record();
    let tail = event_rows(
        connection,
        attempt.run_key,
        record.tail_start as i64,
        record.history_length as i64,
    )?;
    Ok(workflow_lease(record, join_event_rows(&tail)))
}

/// An attempt failed: retried under the policy, or the failure is recorded.
pub fn fail_activity_task(
    store: &mut Store,
    now: i64,
    attempt: HeldAttempt,
    failure: Failure,
) -> StoreResult<()> {
    let (connection, mut context) = store.split(now);
    let (run, activity) = load_held(connection, attempt)?;
    let plan = operations::fail_activity_task(&mut context, run, activity, attempt.token, failure)?;
    persist(connection, Some(attempt.run_key), &plan).map(drop)
}

/// Records progress; StaleTask once the attempt is over (timed out, or cancelled).
pub fn heartbeat_activity_task(
    store: &mut Store,
    now: i64,
    attempt: HeldAttempt,
    details: &[u8],
) -> StoreResult<()> {
    let (connection, mut context) = store.split(now);
    let activity = load_held_activity(connection, attempt)?;
    let plan = operations::heartbeat_activity_task(
        &mut context,
        activity,
        attempt.token,
        Payload(details.to_vec()),
    )?;
    persist(connection, Some(attempt.run_key), &plan).map(drop)
}
