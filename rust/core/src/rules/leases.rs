//! What a worker holds: a leased workflow task or activity attempt, as a record shows it.
//! Every store hands leases out in these shapes (SQLite adds the history tail).

use super::activity::{ActivityRecord, AttemptState};
use super::run::{RunIdentity, RunRecord};
use crate::history::Payload;

/// A leased workflow task: the worker fetches history up to `history_length` and must complete
/// with the same `token` before `deadline_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowTaskLease {
    pub run_key: i64,
    pub token: i64,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub history_length: u64,
    pub deadline_ms: i64,
    /// The first event the cached instance of the worker that last completed a task of the
    /// run lacks: where a store that hands out the history tail with the lease starts it.
    pub tail_start: u64,
}

impl WorkflowTaskLease {
    /// The lease a record holds, if its task is leased.
    pub fn of(record: &RunRecord) -> Option<Self> {
        Some(WorkflowTaskLease {
            run_key: record.key,
            token: record.lease_token()?,
            workflow_id: record.identity.workflow_id.clone(),
            run_id: record.identity.run_id.clone(),
            workflow_type: record.identity.workflow_type.clone(),
            history_length: record.history_length,
            deadline_ms: record.lease_deadline_ms()?,
            tail_start: record.tail_start,
        })
    }
}

/// A leased activity attempt, handed to a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityTaskLease {
    /// The activity's run's key and its ActivityScheduled event's id.
    pub key: (i64, u64),
    pub activity_id: String,
    pub token: i64,
    pub workflow_id: String,
    pub run_id: String,
    pub activity_type: String,
    pub input: Payload,
    pub attempt: u32,
    pub heartbeat_details: Payload,
    pub scheduled_ms: i64,
    pub started_ms: i64,
    /// When this attempt times out (start-to-close or schedule-to-close), if ever.
    pub deadline_ms: Option<i64>,
    pub heartbeat_timeout_ms: Option<u64>,
}

impl ActivityTaskLease {
    /// The lease the running attempt of an activity of run `run_key` holds (None unless it
    /// runs).
    pub fn of(run_key: i64, run: &RunIdentity, activity: &ActivityRecord) -> Option<Self> {
        let AttemptState::Running {
            token, started_ms, ..
        } = activity.state
        else {
            return None;
        };
        Some(ActivityTaskLease {
            key: (run_key, activity.scheduled_event_id),
            activity_id: activity.scheduled.activity_id.clone(),
            token,
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
            activity_type: activity.scheduled.activity_type.clone(),
            input: activity.scheduled.input.clone(),
            attempt: activity.attempt,
            heartbeat_details: activity.heartbeat_details.clone(),
            scheduled_ms: activity.scheduled_ms,
            started_ms,
            deadline_ms: activity.lease_deadline_ms(),
            heartbeat_timeout_ms: activity.scheduled.options.heartbeat_ms,
        })
    }
}
