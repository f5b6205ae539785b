//! Time-driven transitions: timers firing, leases and activity timeouts expiring.
//!
//! Deadlines sit in one ordered set. Entries are never removed when the thing they guard ends
//! early; instead each carries the token or attempt it was made for and lapses if that moved on.
//! That keeps every operation O(log n).

use super::activity_tasks::AttemptState;
use super::store::{MemoryStore, RunStatus, WorkflowTaskSlot};
use crate::history::{EventAttributes, TimeoutType};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Deadline {
    Timer { run_key: u64, started_event_id: u64 },
    WorkflowTaskLease { run_key: u64, token: u64 },
    ActivityScheduleToStart { activity_id: u64, attempt: u32 },
    ActivityStartToClose { activity_id: u64, token: u64 },
    ActivityHeartbeat { activity_id: u64, token: u64 },
    ActivityScheduleToClose { activity_id: u64 },
}

impl MemoryStore {
    /// The earliest time after which a poll could find work that is not there at `now_ms`:
    /// a deadline that needs a [`MemoryStore::tick`], or a task whose ready time (retry
    /// backoff) is still ahead. Tasks ready now do not count: a poller that found none of its
    /// own kind should sleep until something changes, not spin on another kind's queue.
    /// Drops lapsed deadlines from the front first, so idle workers do not wake for nothing.
    pub fn next_wakeup_ms(&mut self, now_ms: i64) -> Option<i64> {
        while let Some(&(at, deadline)) = self.deadlines.first() {
            if self.is_live(deadline) {
                break;
            }
            self.deadlines.remove(&(at, deadline));
        }
        let deadline = self.deadlines.first().map(|(at, _)| *at);
        let after = (now_ms.saturating_add(1), 0);
        let queued = self
            .workflow_queues
            .values()
            .chain(self.activity_queues.values())
            .filter_map(|queue| queue.range(after..).next().map(|(at, _)| *at));
        deadline.into_iter().chain(queued).min()
    }

    /// Tasks that are ready to hand out or leased right now. Zero means nothing can happen
    /// before [`MemoryStore::next_wakeup_ms`]: what a test's time skipping waits for.
    pub fn busy_count(&self, now_ms: i64) -> usize {
        let ready = self
            .workflow_queues
            .values()
            .chain(self.activity_queues.values())
            .map(|queue| queue.iter().take_while(|(at, _)| *at <= now_ms).count())
            .sum::<usize>();
        let leased_workflow_tasks = self
            .runs
            .iter()
            .filter(|run| matches!(run.workflow_task, WorkflowTaskSlot::Leased { .. }))
            .count();
        let running_activities = self
            .activities
            .values()
            .filter(|task| matches!(task.state, AttemptState::Running { .. }))
            .count();
        ready + leased_workflow_tasks + running_activities
    }

    /// Applies every deadline at or before `now_ms`. Returns how many took effect.
    pub fn tick(&mut self, now_ms: i64) -> usize {
        let mut applied = 0;
        while let Some(&(at, deadline)) = self.deadlines.first() {
            if at > now_ms {
                break;
            }
            self.deadlines.remove(&(at, deadline));
            if self.apply_deadline(deadline, now_ms) {
                applied += 1;
            }
        }
        applied
    }

    /// Whether a deadline still guards something (its token or attempt is current).
    fn is_live(&self, deadline: Deadline) -> bool {
        match deadline {
            Deadline::Timer {
                run_key,
                started_event_id,
            } => self.runs[run_key as usize]
                .open_timers
                .contains(&started_event_id),
            Deadline::WorkflowTaskLease { run_key, token } => matches!(
                self.runs[run_key as usize].workflow_task,
                WorkflowTaskSlot::Leased { token: held, .. } if held == token
            ),
            Deadline::ActivityScheduleToStart {
                activity_id,
                attempt,
            } => self.activities.get(&activity_id).is_some_and(|task| {
                task.attempt == attempt && matches!(task.state, AttemptState::Queued { .. })
            }),
            Deadline::ActivityStartToClose { activity_id, token }
            | Deadline::ActivityHeartbeat { activity_id, token } => {
                self.activities.get(&activity_id).is_some_and(|task| {
                    matches!(task.state, AttemptState::Running { token: held, .. } if held == token)
                })
            }
            Deadline::ActivityScheduleToClose { activity_id } => {
                self.activities.contains_key(&activity_id)
            }
        }
    }

    fn apply_deadline(&mut self, deadline: Deadline, now_ms: i64) -> bool {
        match deadline {
            Deadline::Timer {
                run_key,
                started_event_id,
            } => {
                let run = &mut self.runs[run_key as usize];
                if run.status != RunStatus::Running || !run.open_timers.remove(&started_event_id) {
                    return false;
                }
                self.append(
                    run_key,
                    now_ms,
                    EventAttributes::TimerFired { started_event_id },
                );
                self.request_workflow_task(run_key, now_ms);
                true
            }
            Deadline::WorkflowTaskLease { run_key, token } => {
                let run = &mut self.runs[run_key as usize];
                match run.workflow_task {
                    WorkflowTaskSlot::Leased { token: held, .. } if held == token => {
                        // The worker died or stalled: hand the task to another worker.
                        run.workflow_task = WorkflowTaskSlot::Idle;
                        self.request_workflow_task(run_key, now_ms);
                        true
                    }
                    _ => false,
                }
            }
            Deadline::ActivityScheduleToStart {
                activity_id,
                attempt,
            } => {
                let waiting = self.activities.get(&activity_id).is_some_and(|task| {
                    task.attempt == attempt && matches!(task.state, AttemptState::Queued { .. })
                });
                if waiting {
                    self.time_out_activity(activity_id, TimeoutType::ScheduleToStart, now_ms);
                }
                waiting
            }
            Deadline::ActivityStartToClose { activity_id, token } => {
                if self.running_task(activity_id, token).is_err() {
                    return false;
                }
                self.time_out_attempt(activity_id, TimeoutType::StartToClose, now_ms);
                true
            }
            Deadline::ActivityHeartbeat { activity_id, token } => {
                let Ok(task) = self.running_task(activity_id, token) else {
                    return false;
                };
                let timeout_ms = task.options.heartbeat_ms.unwrap_or(0) as i64;
                let due = task.last_heartbeat_ms.saturating_add(timeout_ms);
                if due > now_ms {
                    // A heartbeat arrived since this deadline was set: wait for the new one.
                    self.deadlines
                        .insert((due, Deadline::ActivityHeartbeat { activity_id, token }));
                    return false;
                }
                self.time_out_attempt(activity_id, TimeoutType::Heartbeat, now_ms);
                true
            }
            Deadline::ActivityScheduleToClose { activity_id } => {
                if !self.activities.contains_key(&activity_id) {
                    return false;
                }
                self.time_out_activity(activity_id, TimeoutType::ScheduleToClose, now_ms);
                true
            }
        }
    }
}
