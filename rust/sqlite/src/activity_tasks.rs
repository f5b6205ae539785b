//! Activity attempts: recording a result, resolving an activity.

use mainspring_core::history::EventAttributes;
use mainspring_core::CoreError;
use rusqlite::{params, OptionalExtension};

use crate::error::StoreResult;
use crate::open::Store;
use crate::operation::WorkflowLease;
use crate::runs::append_and_wake;
use crate::ACTIVITY_RUNNING;

/// When an attempt started at `now` runs out of time. Start-to-close falls back to
/// schedule-to-close, as Temporal does.
pub fn attempt_deadline(
    now: i64,
    start_to_close_ms: Option<i64>,
    schedule_to_close_ms: Option<i64>,
) -> Option<i64> {
    start_to_close_ms
        .or(schedule_to_close_ms)
        .map(|per_attempt| now + per_attempt)
}

/// Removes a running attempt that reported its result, fenced by its token: `(run key,
/// scheduled event id, attempt)`; a stale-task error if the attempt is over.
pub fn finish_attempt(store: &Store, activity_id: i64, token: i64) -> StoreResult<(i64, u64, u32)> {
    store
        .connection
        .prepare_cached(
            "DELETE FROM activities WHERE activity_id = ? AND state = ? AND token = ? \
             RETURNING run_key, scheduled_event_id, attempt",
        )?
        .query_row(params![activity_id, ACTIVITY_RUNNING, token], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?
        .ok_or_else(|| CoreError::StaleTask(format!("activity attempt {token} is over")).into())
}

/// Records the result. With `eager_queue`, also leases the workflow task it woke, if that
/// run's tasks go to `eager_queue` (the caller advances it at once).
pub fn complete_activity_task(
    store: &mut Store,
    now: i64,
    activity_id: i64,
    token: i64,
    result: &[u8],
    eager_queue: Option<&str>,
    eager_lease_ms: i64,
) -> StoreResult<Option<WorkflowLease>> {
    let (run_key, scheduled_event_id, attempt) = finish_attempt(store, activity_id, token)?;
    let completed = EventAttributes::ActivityCompleted {
        scheduled_event_id,
        result: mainspring_core::history::Payload(result.to_vec()),
        attempt,
    };
    let (_, _, lease) =
        append_and_wake(store, run_key, now, completed, eager_queue, eager_lease_ms)?;
    Ok(lease)
}

/// Resolves a run's activity as canceled (try-cancel, as Temporal's default: at once; the
/// running attempt learns it through its next heartbeat and its late result is refused) and
/// wakes the run.
pub fn cancel_activity(
    store: &mut Store,
    now: i64,
    run_key: i64,
    scheduled_event_id: u64,
) -> StoreResult<()> {
    let attempt: Option<u32> = store
        .connection
        .prepare_cached(
            "DELETE FROM activities WHERE run_key = ? AND scheduled_event_id = ? \
             RETURNING attempt",
        )?
        .query_row(params![run_key, scheduled_event_id as i64], |row| {
            row.get(0)
        })
        .optional()?;
    if let Some(attempt) = attempt {
        let canceled = EventAttributes::ActivityCanceled {
            scheduled_event_id,
            attempt,
        };
        append_and_wake(store, run_key, now, canceled, None, 0)?;
    }
    Ok(())
}
