//! The records flattened into the columns a database store keeps: one layout for every such
//! store (SQLite in Rust, PostgreSQL from Python through the bindings), so that none maps a
//! record its own way. A store writes every field of a row and reads every field back;
//! `next_deadline_ms` is written for the tick's index (the rules compute it) and not read.
//!
//! `runs.task_state`: 0 idle, 1 queued (ready at `task_ready_ms`), 2 leased (to `task_token`
//! until `task_deadline_ms`). `activities.state`: 0 queued (may start at `ready_ms`), 1 running
//! (under `token` since `started_ms`, last heartbeat at `last_heartbeat_ms`).

use std::sync::Arc;

use super::activity::{ActivityRecord, AttemptState, ScheduledActivity};
use super::row_codec::{decode_failure, decode_policy, encode_failure, encode_policy};
use super::run::{RunIdentity, RunRecord, RunStatus, WorkflowTaskState};
use crate::error::{CoreError, CoreResult};
use crate::history::{ActivityOptions, Payload};

pub const TASK_IDLE: i64 = 0;
pub const TASK_QUEUED: i64 = 1;
pub const TASK_LEASED: i64 = 2;
pub const ATTEMPT_QUEUED: i64 = 0;
pub const ATTEMPT_RUNNING: i64 = 1;

/// A row of `runs`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub run_key: i64,
    pub version: i64,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
    pub status: String,
    pub history_length: i64,
    pub task_state: i64,
    pub task_ready_ms: Option<i64>,
    pub task_token: Option<i64>,
    pub task_deadline_ms: Option<i64>,
    pub task_failures: i64,
    pub last_task_failure: Option<String>,
    pub cancel_requested: bool,
    pub tail_start: i64,
    pub started_ms: i64,
    pub closed_ms: Option<i64>,
    pub dropped_signals: i64,
}

fn corrupt(what: String) -> CoreError {
    CoreError::CorruptRecord(what)
}

fn unsigned(value: i64, column: &str) -> CoreResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(format!("{column} is {value}")))
}

impl RunRecord {
    pub fn to_row(&self) -> RunRow {
        let (task_state, task_ready_ms, task_token, task_deadline_ms) = match self.workflow_task {
            WorkflowTaskState::Idle => (TASK_IDLE, None, None, None),
            WorkflowTaskState::Queued { ready_at_ms } => {
                (TASK_QUEUED, Some(ready_at_ms), None, None)
            }
            WorkflowTaskState::Leased { token, deadline_ms } => {
                (TASK_LEASED, None, Some(token), Some(deadline_ms))
            }
        };
        let identity = &self.identity;
        RunRow {
            run_key: self.key,
            version: self.version,
            workflow_id: identity.workflow_id.clone(),
            run_id: identity.run_id.clone(),
            workflow_type: identity.workflow_type.clone(),
            task_queue: identity.task_queue.clone(),
            status: self.status.name().to_string(),
            history_length: self.history_length as i64,
            task_state,
            task_ready_ms,
            task_token,
            task_deadline_ms,
            task_failures: i64::from(self.task_failures),
            last_task_failure: self.last_task_failure.clone(),
            cancel_requested: self.cancel_requested,
            tail_start: self.tail_start as i64,
            started_ms: self.started_ms,
            closed_ms: self.closed_ms,
            dropped_signals: i64::from(self.dropped_signals),
        }
    }

    pub fn from_row(row: RunRow) -> CoreResult<Self> {
        let missing = |column: &str| corrupt(format!("run {} has no {column}", row.run_key));
        let workflow_task = match row.task_state {
            TASK_IDLE => WorkflowTaskState::Idle,
            TASK_QUEUED => WorkflowTaskState::Queued {
                ready_at_ms: row.task_ready_ms.ok_or_else(|| missing("task_ready_ms"))?,
            },
            TASK_LEASED => WorkflowTaskState::Leased {
                token: row.task_token.ok_or_else(|| missing("task_token"))?,
                deadline_ms: row
                    .task_deadline_ms
                    .ok_or_else(|| missing("task_deadline_ms"))?,
            },
            other => return Err(corrupt(format!("task_state {other}"))),
        };
        Ok(RunRecord {
            key: row.run_key,
            version: row.version,
            status: RunStatus::from_name(&row.status)
                .map_err(|_| corrupt(format!("status {:?}", row.status)))?,
            history_length: unsigned(row.history_length, "history_length")?,
            workflow_task,
            task_failures: u32::try_from(row.task_failures)
                .map_err(|_| corrupt(format!("task_failures {}", row.task_failures)))?,
            last_task_failure: row.last_task_failure,
            cancel_requested: row.cancel_requested,
            dropped_signals: u32::try_from(row.dropped_signals)
                .map_err(|_| corrupt(format!("dropped_signals {}", row.dropped_signals)))?,
            tail_start: unsigned(row.tail_start, "tail_start")?,
            started_ms: row.started_ms,
            closed_ms: row.closed_ms,
            identity: Arc::new(RunIdentity {
                workflow_id: row.workflow_id,
                run_id: row.run_id,
                workflow_type: row.workflow_type,
                task_queue: row.task_queue,
            }),
        })
    }
}

/// A row of `activities` (its run's key is the store's, beside it).
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityRow {
    pub scheduled_event_id: i64,
    pub version: i64,
    pub activity_id: String,
    pub task_queue: String,
    pub activity_type: String,
    pub input: Vec<u8>,
    /// MessagePack ([`super::row_codec`]).
    pub policy: Vec<u8>,
    pub schedule_to_close_ms: Option<i64>,
    pub schedule_to_start_ms: Option<i64>,
    pub start_to_close_ms: Option<i64>,
    pub heartbeat_ms: Option<i64>,
    pub attempt: i64,
    pub scheduled_ms: i64,
    pub state: i64,
    pub ready_ms: Option<i64>,
    pub token: Option<i64>,
    pub started_ms: Option<i64>,
    pub last_heartbeat_ms: Option<i64>,
    pub heartbeat_details: Vec<u8>,
    /// MessagePack ([`super::row_codec`]).
    pub last_failure: Option<Vec<u8>>,
    /// Written for the tick's index; not read.
    pub next_deadline_ms: Option<i64>,
}

fn milliseconds(value: Option<u64>) -> Option<i64> {
    value.map(|ms| ms as i64)
}

fn duration(value: Option<i64>, column: &str) -> CoreResult<Option<u64>> {
    value.map(|ms| unsigned(ms, column)).transpose()
}

impl ActivityRecord {
    pub fn to_row(&self) -> ActivityRow {
        let scheduled = &self.scheduled;
        let options = &scheduled.options;
        let (state, ready_ms, token, started_ms, last_heartbeat_ms) = match self.state {
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
        ActivityRow {
            scheduled_event_id: self.scheduled_event_id as i64,
            version: self.version,
            activity_id: scheduled.activity_id.clone(),
            task_queue: options.task_queue.clone(),
            activity_type: scheduled.activity_type.clone(),
            input: scheduled.input.0.clone(),
            policy: encode_policy(&options.retry_policy),
            schedule_to_close_ms: milliseconds(options.schedule_to_close_ms),
            schedule_to_start_ms: milliseconds(options.schedule_to_start_ms),
            start_to_close_ms: milliseconds(options.start_to_close_ms),
            heartbeat_ms: milliseconds(options.heartbeat_ms),
            attempt: i64::from(self.attempt),
            scheduled_ms: self.scheduled_ms,
            state,
            ready_ms,
            token,
            started_ms,
            last_heartbeat_ms,
            heartbeat_details: self.heartbeat_details.0.clone(),
            last_failure: self.last_failure.as_ref().map(encode_failure),
            next_deadline_ms: self.next_deadline_ms(),
        }
    }

    pub fn from_row(row: ActivityRow) -> CoreResult<Self> {
        let state = match row.state {
            ATTEMPT_QUEUED => AttemptState::Queued {
                ready_at_ms: row.ready_ms.unwrap_or(row.scheduled_ms),
            },
            ATTEMPT_RUNNING => {
                let started_ms = row.started_ms.unwrap_or(row.scheduled_ms);
                AttemptState::Running {
                    token: row.token.ok_or_else(|| {
                        corrupt(format!("running activity {} has no token", row.activity_id))
                    })?,
                    started_ms,
                    last_heartbeat_ms: row.last_heartbeat_ms.unwrap_or(started_ms),
                }
            }
            other => return Err(corrupt(format!("activity state {other}"))),
        };
        Ok(ActivityRecord {
            scheduled_event_id: unsigned(row.scheduled_event_id, "scheduled_event_id")?,
            version: row.version,
            attempt: u32::try_from(row.attempt)
                .map_err(|_| corrupt(format!("attempt {}", row.attempt)))?,
            scheduled_ms: row.scheduled_ms,
            state,
            heartbeat_details: Payload(row.heartbeat_details),
            last_failure: row
                .last_failure
                .as_deref()
                .map(decode_failure)
                .transpose()?,
            scheduled: Arc::new(ScheduledActivity {
                activity_id: row.activity_id,
                activity_type: row.activity_type,
                input: Payload(row.input),
                options: ActivityOptions {
                    task_queue: row.task_queue,
                    schedule_to_close_ms: duration(row.schedule_to_close_ms, "schedule_to_close")?,
                    schedule_to_start_ms: duration(row.schedule_to_start_ms, "schedule_to_start")?,
                    start_to_close_ms: duration(row.start_to_close_ms, "start_to_close_ms")?,
                    heartbeat_ms: duration(row.heartbeat_ms, "heartbeat_ms")?,
                    retry_policy: decode_policy(&row.policy)?,
                },
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Failure, RetryPolicy};
    use crate::rules::CountingTokens;

    #[test]
    fn records_survive_their_rows() {
        let mut run = RunRecord::new(
            RunIdentity {
                workflow_id: "w".into(),
                run_id: "r".into(),
                workflow_type: "t".into(),
                task_queue: "q".into(),
            },
            5,
            1,
        );
        run.append(1);
        run.wake(5, None, &mut CountingTokens::default());
        run.lease_workflow_task(5, 100, 42).unwrap();
        run.last_task_failure = Some("boom".into());
        assert_eq!(RunRecord::from_row(run.to_row()).unwrap(), run);

        let mut activity = ActivityRecord::scheduled(
            3,
            "1".into(),
            "charge".into(),
            Payload::new(b"[1]".to_vec()),
            ActivityOptions {
                task_queue: "q".into(),
                heartbeat_ms: Some(50),
                start_to_close_ms: Some(1_000),
                retry_policy: RetryPolicy {
                    non_retryable_error_types: vec!["Fatal".into()],
                    ..RetryPolicy::default()
                },
                ..ActivityOptions::default()
            },
            7,
        );
        assert_eq!(
            ActivityRecord::from_row(activity.to_row()).unwrap(),
            activity
        );
        activity.lease(8, 9).unwrap();
        activity.last_failure = Some(Failure::new("earlier", "ValueError"));
        let row = activity.to_row();
        assert_eq!(row.next_deadline_ms, Some(58));
        assert_eq!(ActivityRecord::from_row(row).unwrap(), activity);
    }

    #[test]
    fn a_row_that_breaks_the_layout_is_a_corrupt_record() {
        let run = RunRecord::new(
            RunIdentity {
                workflow_id: "w".into(),
                run_id: "r".into(),
                workflow_type: "t".into(),
                task_queue: "q".into(),
            },
            0,
            1,
        );
        let row = RunRow {
            task_state: TASK_LEASED,
            ..run.to_row()
        };
        assert!(matches!(
            RunRecord::from_row(row),
            Err(CoreError::CorruptRecord(_))
        ));
    }
}
