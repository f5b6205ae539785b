//! An open activity's record, the rules of its attempts, and a pending timer's record.
//!
//! Attempts add no events; only the activity's final outcome is recorded, with its attempt
//! count. Each attempt runs under a fresh token, so a worker whose attempt timed out cannot
//! report it.
//!
//! ```text
//!            lease (poll)             failed / start-to-close / heartbeat timeout,
//!   Queued ─────────────▶ Running ──── retried under the policy ───▶ Queued(later)
//!     │                     │
//!     │ schedule-to-start   │ completed / failed for good / timed out / canceled
//!     ▼                     ▼
//!   resolved: one event (ActivityCompleted | ActivityFailed | ActivityTimedOut |
//!             ActivityCanceled), the record deleted
//! ```
//!
//! Schedule-to-close bounds the whole activity, in either state, and is never retried. The
//! deadlines are not stored apart: each derives from the state (see the `*_deadline_ms`
//! methods), and a store indexes [`ActivityRecord::next_deadline_ms`].

use std::sync::Arc;

use super::retry::{decide, RetryDecision};
use crate::error::{CoreError, CoreResult};
use crate::history::{ActivityOptions, EventAttributes, Failure, Payload, TimeoutType};

/// Where an activity's current attempt is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptState {
    /// Waiting for a worker from `ready_at_ms` (later than now while a retry backs off).
    Queued { ready_at_ms: i64 },
    /// Held by the worker holding `token` since `started_ms`; its last heartbeat (or its
    /// start) at `last_heartbeat_ms`.
    Running {
        token: i64,
        started_ms: i64,
        last_heartbeat_ms: i64,
    },
}

/// One open activity as a store keeps it (one row). Its run's store key and its
/// ActivityScheduled event's id identify it; plans name it by the latter (a plan concerns one
/// run).
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityRecord {
    pub scheduled_event_id: u64,
    /// Moves with every change to the record: the compare-and-set of the next write.
    pub version: i64,
    /// What it was scheduled with; shared, as it never changes.
    pub scheduled: Arc<ScheduledActivity>,
    pub attempt: u32,
    pub scheduled_ms: i64,
    pub state: AttemptState,
    /// The last heartbeat's details; the next attempt starts with them.
    pub heartbeat_details: Payload,
    /// Why the previous attempt failed, reported with a timeout that ends the activity.
    pub last_failure: Option<Failure>,
}

/// What an activity was scheduled with (its ActivityScheduled event's attributes).
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledActivity {
    /// The id workers and users see: the command's sequence number, as Temporal's default.
    pub activity_id: String,
    pub activity_type: String,
    pub input: Payload,
    pub options: ActivityOptions,
}

/// How a failed or timed-out attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptEnd {
    /// Another attempt is queued (the record changed).
    Retried,
    /// The activity is over: record this event and delete the record.
    Resolved(EventAttributes),
}

/// A pending timer: fires at `fire_at_ms` unless its run cancels it or closes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerRecord {
    pub started_event_id: u64,
    pub fire_at_ms: i64,
}

fn timeout_failure(timeout: TimeoutType) -> Failure {
    Failure::new(
        format!("activity {} timeout", timeout.name()),
        "ActivityTimeout",
    )
}

impl ActivityRecord {
    /// The first attempt of an activity scheduled at `now_ms`, queued.
    pub fn scheduled(
        scheduled_event_id: u64,
        activity_id: String,
        activity_type: String,
        input: Payload,
        options: ActivityOptions,
        now_ms: i64,
    ) -> Self {
        ActivityRecord {
            scheduled_event_id,
            version: 1,
            scheduled: Arc::new(ScheduledActivity {
                activity_id,
                activity_type,
                input,
                options,
            }),
            attempt: 1,
            scheduled_ms: now_ms,
            state: AttemptState::Queued {
                ready_at_ms: now_ms,
            },
            heartbeat_details: Payload::default(),
            last_failure: None,
        }
    }

    /// When the whole activity runs out of time (schedule-to-close), if ever.
    pub fn close_deadline_ms(&self) -> Option<i64> {
        self.scheduled
            .options
            .schedule_to_close_ms
            .map(|ms| self.scheduled_ms.saturating_add(ms as i64))
    }

    /// When a queued attempt times out waiting for a worker (schedule-to-start).
    pub fn start_deadline_ms(&self) -> Option<i64> {
        match (&self.state, self.scheduled.options.schedule_to_start_ms) {
            (AttemptState::Queued { ready_at_ms }, Some(ms)) => {
                Some(ready_at_ms.saturating_add(ms as i64))
            }
            _ => None,
        }
    }

    /// When the running attempt times out (start-to-close, which falls back to
    /// schedule-to-close, as Temporal's does).
    pub fn attempt_deadline_ms(&self) -> Option<i64> {
        let per_attempt = self
            .scheduled
            .options
            .start_to_close_ms
            .or(self.scheduled.options.schedule_to_close_ms)?;
        match self.state {
            AttemptState::Running { started_ms, .. } => {
                Some(started_ms.saturating_add(per_attempt as i64))
            }
            AttemptState::Queued { .. } => None,
        }
    }

    /// When the running attempt times out for want of a heartbeat.
    pub fn heartbeat_deadline_ms(&self) -> Option<i64> {
        match (&self.state, self.scheduled.options.heartbeat_ms) {
            (
                AttemptState::Running {
                    last_heartbeat_ms, ..
                },
                Some(ms),
            ) => Some(last_heartbeat_ms.saturating_add(ms as i64)),
            _ => None,
        }
    }

    /// The earliest of the deadlines above: when [`ActivityRecord::due_timeout`] may next
    /// have something to say. What a store indexes to find due activities.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        [
            self.close_deadline_ms(),
            self.start_deadline_ms(),
            self.attempt_deadline_ms(),
            self.heartbeat_deadline_ms(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The deadline a worker of the running attempt must finish by: its own or the whole
    /// activity's, whichever comes first.
    pub fn lease_deadline_ms(&self) -> Option<i64> {
        [self.attempt_deadline_ms(), self.close_deadline_ms()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When a queued attempt may be handed out.
    pub fn ready_at_ms(&self) -> Option<i64> {
        match self.state {
            AttemptState::Queued { ready_at_ms } => Some(ready_at_ms),
            AttemptState::Running { .. } => None,
        }
    }

    /// Hands the attempt to a worker. Refused (StaleTask) unless it is queued and ready.
    pub fn lease(&mut self, now_ms: i64, token: i64) -> CoreResult<()> {
        match self.state {
            AttemptState::Queued { ready_at_ms } if ready_at_ms <= now_ms => {
                self.state = AttemptState::Running {
                    token,
                    started_ms: now_ms,
                    last_heartbeat_ms: now_ms,
                };
                Ok(())
            }
            _ => Err(CoreError::StaleTask(format!(
                "activity {} is not ready to lease",
                self.scheduled.activity_id
            ))),
        }
    }

    /// Whether `token` holds the running attempt at `now_ms` (fencing): a result, failure or
    /// heartbeat of an attempt that is over — another attempt's, or one whose timeout is due,
    /// even before a tick applied it, as a workflow task's lease lapses at its deadline — is
    /// refused.
    pub fn check_attempt(&self, token: i64, now_ms: i64) -> CoreResult<()> {
        match self.state {
            AttemptState::Running { token: held, .. }
                if held == token && self.due_timeout(now_ms).is_none() =>
            {
                Ok(())
            }
            _ => Err(CoreError::StaleTask(format!(
                "activity attempt {token} is over"
            ))),
        }
    }

    /// Records progress of the running attempt: its details and a later heartbeat deadline.
    pub fn heartbeat(&mut self, token: i64, details: Payload, now_ms: i64) -> CoreResult<()> {
        self.check_attempt(token, now_ms)?;
        if let AttemptState::Running {
            last_heartbeat_ms, ..
        } = &mut self.state
        {
            *last_heartbeat_ms = now_ms;
        }
        self.heartbeat_details = details;
        Ok(())
    }

    /// The event that records the attempt's result.
    pub fn completed(&self, result: Payload) -> EventAttributes {
        EventAttributes::ActivityCompleted {
            scheduled_event_id: self.scheduled_event_id,
            result,
            attempt: self.attempt,
        }
    }

    /// The event that records a try-cancel (Temporal's default): the workflow learns at once;
    /// the running attempt learns through its next heartbeat and its late result is refused.
    pub fn canceled(&self) -> EventAttributes {
        EventAttributes::ActivityCanceled {
            scheduled_event_id: self.scheduled_event_id,
            attempt: self.attempt,
        }
    }

    /// An attempt failed (reported, or timed out with `timeout`): retry it under the policy,
    /// or resolve the activity.
    pub fn attempt_failed(
        &mut self,
        failure: Failure,
        timeout: Option<TimeoutType>,
        now_ms: i64,
    ) -> AttemptEnd {
        let decision = decide(
            &self.scheduled.options.retry_policy,
            &failure,
            self.attempt,
            now_ms,
            self.close_deadline_ms(),
        );
        match decision {
            RetryDecision::RetryAfter(delay_ms) => {
                self.attempt += 1;
                self.last_failure = Some(failure);
                self.state = AttemptState::Queued {
                    ready_at_ms: now_ms.saturating_add(delay_ms as i64),
                };
                AttemptEnd::Retried
            }
            RetryDecision::GiveUp => AttemptEnd::Resolved(match timeout {
                Some(timeout_type) => EventAttributes::ActivityTimedOut {
                    scheduled_event_id: self.scheduled_event_id,
                    timeout_type,
                    last_failure: Some(Box::new(failure)),
                    attempt: self.attempt,
                },
                None => EventAttributes::ActivityFailed {
                    scheduled_event_id: self.scheduled_event_id,
                    failure: Box::new(failure),
                    attempt: self.attempt,
                },
            }),
        }
    }

    /// The timeout that applies at `now_ms`, if one does. Schedule-to-close first: when the
    /// whole activity is out of time that is what it says, whatever else also passed.
    pub fn due_timeout(&self, now_ms: i64) -> Option<TimeoutType> {
        let passed = |deadline: Option<i64>| deadline.is_some_and(|at| at <= now_ms);
        if passed(self.close_deadline_ms()) {
            Some(TimeoutType::ScheduleToClose)
        } else if passed(self.start_deadline_ms()) {
            Some(TimeoutType::ScheduleToStart)
        } else if passed(self.attempt_deadline_ms()) {
            Some(TimeoutType::StartToClose)
        } else if passed(self.heartbeat_deadline_ms()) {
            Some(TimeoutType::Heartbeat)
        } else {
            None
        }
    }

    /// Applies the timeout due at `now_ms`: schedule-to-close and schedule-to-start end the
    /// activity (never retried, as in Temporal); start-to-close and heartbeat fail the
    /// attempt, which the policy may retry. None when nothing is due.
    pub fn apply_due_timeout(&mut self, now_ms: i64) -> Option<AttemptEnd> {
        let timeout = self.due_timeout(now_ms)?;
        Some(match timeout {
            TimeoutType::ScheduleToClose | TimeoutType::ScheduleToStart => {
                AttemptEnd::Resolved(EventAttributes::ActivityTimedOut {
                    scheduled_event_id: self.scheduled_event_id,
                    timeout_type: timeout,
                    last_failure: self.last_failure.clone().map(Box::new),
                    attempt: self.attempt,
                })
            }
            TimeoutType::StartToClose | TimeoutType::Heartbeat => {
                self.attempt_failed(timeout_failure(timeout), Some(timeout), now_ms)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RetryPolicy;

    fn activity(change: impl FnOnce(&mut ActivityOptions)) -> ActivityRecord {
        let mut options = ActivityOptions {
            task_queue: "q".into(),
            start_to_close_ms: Some(1_000),
            retry_policy: RetryPolicy {
                initial_interval_ms: 100,
                maximum_attempts: 3,
                ..RetryPolicy::default()
            },
            ..ActivityOptions::default()
        };
        change(&mut options);
        ActivityRecord::scheduled(5, "1".into(), "act".into(), Payload::default(), options, 0)
    }

    fn timed_out(end: Option<AttemptEnd>) -> Option<TimeoutType> {
        match end {
            Some(AttemptEnd::Resolved(EventAttributes::ActivityTimedOut {
                timeout_type, ..
            })) => Some(timeout_type),
            _ => None,
        }
    }

    #[test]
    fn a_lease_is_fenced_by_its_token() {
        let mut record = activity(|_| {});
        record.lease(0, 11).unwrap();
        assert!(record.lease(0, 12).is_err());
        assert!(record.check_attempt(11, 999).is_ok());
        assert!(record.check_attempt(12, 999).is_err());
        // At its deadline the attempt is over, before any tick applies the timeout.
        assert!(record.check_attempt(11, 1_000).is_err());
        assert_eq!(record.lease_deadline_ms(), Some(1_000));
    }

    #[test]
    fn start_to_close_retries_then_gives_up_after_the_maximum_attempts() {
        let mut record = activity(|_| {});
        record.lease(0, 1).unwrap();
        assert_eq!(record.due_timeout(999), None);
        assert_eq!(record.apply_due_timeout(1_000), Some(AttemptEnd::Retried));
        assert_eq!((record.attempt, record.ready_at_ms()), (2, Some(1_100)));
        assert_eq!(
            record.last_failure.as_ref().map(|f| f.error_type.as_str()),
            Some("ActivityTimeout")
        );
        record.lease(1_100, 2).unwrap();
        assert_eq!(record.apply_due_timeout(2_100), Some(AttemptEnd::Retried));
        record.lease(2_300, 3).unwrap();
        assert_eq!(
            timed_out(record.apply_due_timeout(3_300)),
            Some(TimeoutType::StartToClose)
        );
    }

    #[test]
    fn heartbeats_push_the_heartbeat_deadline_and_a_missed_one_times_out() {
        let mut record = activity(|options| options.heartbeat_ms = Some(200));
        record.lease(0, 1).unwrap();
        record
            .heartbeat(1, Payload::new(b"half".to_vec()), 150)
            .unwrap();
        assert_eq!(record.heartbeat_deadline_ms(), Some(350));
        assert_eq!(record.due_timeout(349), None);
        assert_eq!(record.due_timeout(350), Some(TimeoutType::Heartbeat));
        assert!(record.heartbeat(2, Payload::default(), 160).is_err());
        assert_eq!(record.apply_due_timeout(350), Some(AttemptEnd::Retried));
        // The next attempt starts with the last details.
        assert_eq!(record.heartbeat_details, Payload::new(b"half".to_vec()));
    }

    #[test]
    fn schedule_to_start_and_schedule_to_close_end_the_activity_without_retry() {
        let mut waiting = activity(|options| options.schedule_to_start_ms = Some(50));
        assert_eq!(
            timed_out(waiting.apply_due_timeout(50)),
            Some(TimeoutType::ScheduleToStart)
        );
        let mut bounded = activity(|options| options.schedule_to_close_ms = Some(500));
        bounded.lease(0, 1).unwrap();
        // Start-to-close (1 s) is later than schedule-to-close: the lease ends at 500.
        assert_eq!(bounded.lease_deadline_ms(), Some(500));
        assert_eq!(
            timed_out(bounded.apply_due_timeout(500)),
            Some(TimeoutType::ScheduleToClose)
        );
    }

    #[test]
    fn a_retry_that_would_pass_schedule_to_close_gives_up() {
        let mut record = activity(|options| options.schedule_to_close_ms = Some(1_050));
        record.lease(0, 1).unwrap();
        let end = record.attempt_failed(Failure::new("boom", "ValueError"), None, 1_000);
        assert!(matches!(
            end,
            AttemptEnd::Resolved(EventAttributes::ActivityFailed { attempt: 1, .. })
        ));
    }

    #[test]
    fn start_to_close_falls_back_to_schedule_to_close() {
        let mut record = activity(|options| {
            options.start_to_close_ms = None;
            options.schedule_to_close_ms = Some(700);
        });
        record.lease(100, 1).unwrap();
        assert_eq!(record.attempt_deadline_ms(), Some(800));
        assert_eq!(record.next_deadline_ms(), Some(700));
    }
}
