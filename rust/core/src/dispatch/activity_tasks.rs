//! Activity tasks: queueing, leases per attempt, heartbeats, retries and cancellation.
//!
//! Attempts do not add events; only an activity's final outcome is recorded, with its attempt
//! count. Each attempt gets a fresh token, so a worker whose attempt timed out cannot report it.
//! Cancellation follows Temporal's default (try-cancel): the workflow learns at once, the running
//! attempt learns through its next heartbeat, and its late result is refused.

use super::deadlines::Deadline;
use super::retry::{decide, RetryDecision};
use super::store::MemoryStore;
use crate::error::{CoreError, CoreResult};
use crate::history::{ActivityOptions, EventAttributes, Failure, Payload, TimeoutType};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum AttemptState {
    Queued { ready_at_ms: i64 },
    Running { token: u64, started_ms: i64 },
}

pub(super) struct ActivityTask {
    pub run_key: u64,
    pub scheduled_event_id: u64,
    pub activity_type: String,
    pub input: Payload,
    pub options: ActivityOptions,
    pub attempt: u32,
    pub scheduled_ms: i64,
    pub state: AttemptState,
    pub heartbeat_details: Payload,
    pub last_heartbeat_ms: i64,
    pub last_failure: Option<Failure>,
}

impl ActivityTask {
    fn schedule_to_close_deadline(&self) -> Option<i64> {
        self.options
            .schedule_to_close_ms
            .map(|ms| self.scheduled_ms.saturating_add(ms as i64))
    }

    /// Start-to-close falls back to schedule-to-close, as Temporal does.
    fn start_to_close_ms(&self) -> Option<u64> {
        self.options
            .start_to_close_ms
            .or(self.options.schedule_to_close_ms)
    }
}

/// A leased activity attempt, handed to a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityTaskLease {
    pub activity_id: u64,
    pub token: u64,
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

impl MemoryStore {
    pub(super) fn create_activity_task(
        &mut self,
        run_key: u64,
        scheduled_event_id: u64,
        activity_type: String,
        input: Payload,
        options: ActivityOptions,
        now_ms: i64,
    ) {
        let activity_id = self.next_activity_id;
        self.next_activity_id += 1;
        let task = ActivityTask {
            run_key,
            scheduled_event_id,
            activity_type,
            input,
            options,
            attempt: 1,
            scheduled_ms: now_ms,
            state: AttemptState::Queued {
                ready_at_ms: now_ms,
            },
            heartbeat_details: Payload::default(),
            last_heartbeat_ms: now_ms,
            last_failure: None,
        };
        if let Some(deadline) = task.schedule_to_close_deadline() {
            self.deadlines
                .insert((deadline, Deadline::ActivityScheduleToClose { activity_id }));
        }
        self.runs[run_key as usize]
            .open_activities
            .insert(activity_id);
        self.activities.insert(activity_id, task);
        self.queue_attempt(activity_id, now_ms);
    }

    fn queue_attempt(&mut self, activity_id: u64, ready_at_ms: i64) {
        let task = self
            .activities
            .get_mut(&activity_id)
            .expect("queued task exists");
        task.state = AttemptState::Queued { ready_at_ms };
        if let Some(ms) = task.options.schedule_to_start_ms {
            self.deadlines.insert((
                ready_at_ms.saturating_add(ms as i64),
                Deadline::ActivityScheduleToStart {
                    activity_id,
                    attempt: task.attempt,
                },
            ));
        }
        self.activity_queues
            .entry(task.options.task_queue.clone())
            .or_default()
            .insert((ready_at_ms, activity_id));
    }

    /// Removes a task and its queue entry; deadlines that refer to it lapse on their own.
    pub(super) fn drop_activity_task(&mut self, activity_id: u64) -> Option<ActivityTask> {
        let task = self.activities.remove(&activity_id)?;
        if let AttemptState::Queued { ready_at_ms } = task.state {
            if let Some(queue) = self.activity_queues.get_mut(&task.options.task_queue) {
                queue.remove(&(ready_at_ms, activity_id));
            }
        }
        if let Some(run) = self.runs.get_mut(task.run_key as usize) {
            run.open_activities.remove(&activity_id);
        }
        Some(task)
    }

    /// Records an activity's final outcome and wakes its workflow.
    fn resolve_activity(
        &mut self,
        activity_id: u64,
        now_ms: i64,
        outcome: impl FnOnce(u64, u32) -> EventAttributes,
    ) {
        let Some(task) = self.drop_activity_task(activity_id) else {
            return;
        };
        let attributes = outcome(task.scheduled_event_id, task.attempt);
        self.append(task.run_key, now_ms, attributes);
        self.request_workflow_task(task.run_key, now_ms);
    }

    pub(super) fn cancel_activity_task(
        &mut self,
        run_key: u64,
        scheduled_event_id: u64,
        now_ms: i64,
    ) {
        let found = self.runs[run_key as usize]
            .open_activities
            .iter()
            .copied()
            .find(|id| self.activities[id].scheduled_event_id == scheduled_event_id);
        if let Some(activity_id) = found {
            self.resolve_activity(activity_id, now_ms, |scheduled_event_id, attempt| {
                EventAttributes::ActivityCanceled {
                    scheduled_event_id,
                    attempt,
                }
            });
        }
    }

    pub fn poll_activity_task(
        &mut self,
        task_queue: &str,
        now_ms: i64,
    ) -> Option<ActivityTaskLease> {
        let queue = self.activity_queues.get_mut(task_queue)?;
        let &(ready_at_ms, activity_id) = queue.first()?;
        if ready_at_ms > now_ms {
            return None;
        }
        queue.remove(&(ready_at_ms, activity_id));
        let token = self.issue_token();
        let task = self
            .activities
            .get_mut(&activity_id)
            .expect("queued task exists");
        task.state = AttemptState::Running {
            token,
            started_ms: now_ms,
        };
        task.last_heartbeat_ms = now_ms;
        let attempt_deadline = task
            .start_to_close_ms()
            .map(|ms| now_ms.saturating_add(ms as i64));
        let deadline_ms = match (attempt_deadline, task.schedule_to_close_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let heartbeat_timeout_ms = task.options.heartbeat_ms;
        let run = &self.runs[task.run_key as usize];
        let lease = ActivityTaskLease {
            activity_id,
            token,
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
            activity_type: task.activity_type.clone(),
            input: task.input.clone(),
            attempt: task.attempt,
            heartbeat_details: task.heartbeat_details.clone(),
            scheduled_ms: task.scheduled_ms,
            started_ms: now_ms,
            deadline_ms,
            heartbeat_timeout_ms,
        };
        if let Some(deadline) = attempt_deadline {
            self.deadlines.insert((
                deadline,
                Deadline::ActivityStartToClose { activity_id, token },
            ));
        }
        if let Some(ms) = heartbeat_timeout_ms {
            self.deadlines.insert((
                now_ms.saturating_add(ms as i64),
                Deadline::ActivityHeartbeat { activity_id, token },
            ));
        }
        Some(lease)
    }

    /// The running task behind `token`, or `StaleTask` if that attempt is over.
    pub(super) fn running_task(
        &mut self,
        activity_id: u64,
        token: u64,
    ) -> CoreResult<&mut ActivityTask> {
        match self.activities.get_mut(&activity_id) {
            Some(task) if matches!(task.state, AttemptState::Running { token: held, .. } if held == token) => {
                Ok(task)
            }
            _ => Err(CoreError::StaleTask(format!("activity attempt {token}"))),
        }
    }

    pub fn complete_activity_task(
        &mut self,
        activity_id: u64,
        token: u64,
        result: Payload,
        now_ms: i64,
    ) -> CoreResult<()> {
        self.running_task(activity_id, token)?;
        self.resolve_activity(activity_id, now_ms, |scheduled_event_id, attempt| {
            EventAttributes::ActivityCompleted {
                scheduled_event_id,
                result,
                attempt,
            }
        });
        Ok(())
    }

    /// An attempt failed: retry it under the policy or record the failure.
    pub fn fail_activity_task(
        &mut self,
        activity_id: u64,
        token: u64,
        failure: Failure,
        now_ms: i64,
    ) -> CoreResult<()> {
        self.running_task(activity_id, token)?;
        self.attempt_failed(activity_id, failure, None, now_ms);
        Ok(())
    }

    /// Shared by reported failures and attempt timeouts (`timeout` set).
    pub(super) fn attempt_failed(
        &mut self,
        activity_id: u64,
        failure: Failure,
        timeout: Option<TimeoutType>,
        now_ms: i64,
    ) {
        let task = self
            .activities
            .get_mut(&activity_id)
            .expect("failing task exists");
        let decision = decide(
            &task.options.retry_policy,
            &failure,
            task.attempt,
            now_ms,
            task.schedule_to_close_deadline(),
        );
        match decision {
            RetryDecision::RetryAfter(delay_ms) => {
                task.attempt += 1;
                task.last_failure = Some(failure);
                self.queue_attempt(activity_id, now_ms.saturating_add(delay_ms as i64));
            }
            RetryDecision::GiveUp => {
                self.resolve_activity(activity_id, now_ms, |scheduled_event_id, attempt| {
                    match timeout {
                        Some(timeout_type) => EventAttributes::ActivityTimedOut {
                            scheduled_event_id,
                            timeout_type,
                            last_failure: Some(Box::new(failure)),
                            attempt,
                        },
                        None => EventAttributes::ActivityFailed {
                            scheduled_event_id,
                            failure: Box::new(failure),
                            attempt,
                        },
                    }
                });
            }
        }
    }

    /// Records progress; returns `StaleTask` once the attempt is over (timed out or the
    /// activity was cancelled), which the worker reports to the activity as cancellation.
    pub fn heartbeat_activity_task(
        &mut self,
        activity_id: u64,
        token: u64,
        details: Payload,
        now_ms: i64,
    ) -> CoreResult<()> {
        let task = self.running_task(activity_id, token)?;
        task.heartbeat_details = details;
        task.last_heartbeat_ms = now_ms;
        Ok(())
    }

    pub(super) fn time_out_attempt(
        &mut self,
        activity_id: u64,
        timeout_type: TimeoutType,
        now_ms: i64,
    ) {
        let past_schedule_to_close = self
            .activities
            .get(&activity_id)
            .and_then(ActivityTask::schedule_to_close_deadline)
            .is_some_and(|deadline| deadline <= now_ms);
        if past_schedule_to_close {
            // The whole activity is out of time, not just this attempt: say so.
            self.time_out_activity(activity_id, TimeoutType::ScheduleToClose, now_ms);
            return;
        }
        let failure = MemoryStore::failure_of_timeout(timeout_type.name());
        self.attempt_failed(activity_id, failure, Some(timeout_type), now_ms);
    }

    /// Timeouts that are never retried: the whole activity is over.
    pub(super) fn time_out_activity(
        &mut self,
        activity_id: u64,
        timeout_type: TimeoutType,
        now_ms: i64,
    ) {
        let last_failure = self
            .activities
            .get(&activity_id)
            .and_then(|task| task.last_failure.clone());
        self.resolve_activity(activity_id, now_ms, |scheduled_event_id, attempt| {
            EventAttributes::ActivityTimedOut {
                scheduled_event_id,
                timeout_type,
                last_failure: last_failure.map(Box::new),
                attempt,
            }
        });
    }
}
