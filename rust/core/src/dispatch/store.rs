//! Runs, their histories and workflow tasks.

use std::collections::{BTreeMap, BTreeSet};

use super::activity_tasks::ActivityTask;
use super::deadlines::Deadline;
use super::effects::{effect_of, Effect};
use crate::error::{CoreError, CoreResult};
use crate::history::{
    Event, EventAttributes, EventRole, Failure, Payload, WorkflowStartedAttributes,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Canceled,
    Terminated,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Failed => "FAILED",
            RunStatus::Canceled => "CANCELED",
            RunStatus::Terminated => "TERMINATED",
        }
    }
}

/// Operational knobs of the dispatcher (no hard-coded constants in the logic).
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Delay before a failed workflow task is retried; doubles per consecutive failure.
    pub workflow_task_retry_initial_ms: u64,
    pub workflow_task_retry_maximum_ms: u64,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            workflow_task_retry_initial_ms: 1_000,
            workflow_task_retry_maximum_ms: 60_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WorkflowTaskSlot {
    Idle,
    Queued { ready_at_ms: i64 },
    Leased { token: u64, deadline_ms: i64 },
}

pub(super) struct RunRecord {
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
    pub status: RunStatus,
    pub events: Vec<Event>,
    pub workflow_task: WorkflowTaskSlot,
    pub consecutive_task_failures: u32,
    pub last_task_failure: Option<String>,
    pub started_ms: i64,
    pub closed_ms: Option<i64>,
    /// Started timers not yet fired or cancelled, by their TimerStarted event id.
    pub open_timers: BTreeSet<u64>,
    /// Activity ids of this run's open activity tasks.
    pub open_activities: BTreeSet<u64>,
}

impl RunRecord {
    fn summary(&self, run_key: u64) -> RunSummary {
        RunSummary {
            run_key,
            workflow_id: self.workflow_id.clone(),
            run_id: self.run_id.clone(),
            workflow_type: self.workflow_type.clone(),
            task_queue: self.task_queue.clone(),
            status: self.status,
            history_length: self.events.len() as u64,
            started_ms: self.started_ms,
            closed_ms: self.closed_ms,
            last_task_failure: self.last_task_failure.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub run_key: u64,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
    pub status: RunStatus,
    pub history_length: u64,
    pub started_ms: i64,
    pub closed_ms: Option<i64>,
    pub last_task_failure: Option<String>,
}

/// A leased workflow task: the worker fetches history up to `history_length` and must complete
/// with the same `token` before `deadline_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowTaskLease {
    pub run_key: u64,
    pub token: u64,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub history_length: u64,
    pub deadline_ms: i64,
}

pub struct MemoryStore {
    pub(super) config: DispatcherConfig,
    pub(super) runs: Vec<RunRecord>,
    pub(super) current_run_by_workflow_id: BTreeMap<String, u64>,
    /// Per task queue: (ready_at_ms, run_key) of queued workflow tasks.
    pub(super) workflow_queues: BTreeMap<String, BTreeSet<(i64, u64)>>,
    pub(super) activities: BTreeMap<u64, ActivityTask>,
    /// Per task queue: (ready_at_ms, activity_id) of activity tasks waiting for a worker.
    pub(super) activity_queues: BTreeMap<String, BTreeSet<(i64, u64)>>,
    pub(super) deadlines: BTreeSet<(i64, Deadline)>,
    pub(super) next_token: u64,
    pub(super) next_activity_id: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DispatcherConfig::default())
    }
}

impl MemoryStore {
    pub fn new(config: DispatcherConfig) -> Self {
        MemoryStore {
            config,
            runs: Vec::new(),
            current_run_by_workflow_id: BTreeMap::new(),
            workflow_queues: BTreeMap::new(),
            activities: BTreeMap::new(),
            activity_queues: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_token: 1,
            next_activity_id: 1,
        }
    }

    pub(super) fn issue_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    pub(super) fn run(&self, run_key: u64) -> CoreResult<&RunRecord> {
        self.runs
            .get(run_key as usize)
            .ok_or_else(|| CoreError::WorkflowNotFound(format!("run key {run_key}")))
    }

    fn current_run_key(&self, workflow_id: &str) -> CoreResult<u64> {
        self.current_run_by_workflow_id
            .get(workflow_id)
            .copied()
            .ok_or_else(|| CoreError::WorkflowNotFound(workflow_id.to_string()))
    }

    fn running_run_key(&self, workflow_id: &str) -> CoreResult<u64> {
        let run_key = self.current_run_key(workflow_id)?;
        if self.runs[run_key as usize].status != RunStatus::Running {
            return Err(CoreError::WorkflowNotRunning(workflow_id.to_string()));
        }
        Ok(run_key)
    }

    /// Appends one event to a run and returns its id.
    pub(super) fn append(&mut self, run_key: u64, now_ms: i64, attributes: EventAttributes) -> u64 {
        let run = &mut self.runs[run_key as usize];
        let event_id = run.events.len() as u64 + 1;
        run.events.push(Event {
            event_id,
            timestamp_ms: now_ms,
            attributes,
        });
        event_id
    }

    /// Makes sure a workflow task will look at the run's new events. A leased task is left
    /// alone: its completion checks for events it did not see and queues the next task.
    pub(super) fn request_workflow_task(&mut self, run_key: u64, ready_at_ms: i64) {
        let run = &mut self.runs[run_key as usize];
        if run.status != RunStatus::Running || run.workflow_task != WorkflowTaskSlot::Idle {
            return;
        }
        run.workflow_task = WorkflowTaskSlot::Queued { ready_at_ms };
        self.workflow_queues
            .entry(run.task_queue.clone())
            .or_default()
            .insert((ready_at_ms, run_key));
    }

    pub fn start_workflow(
        &mut self,
        workflow_id: &str,
        run_id: &str,
        workflow_type: &str,
        task_queue: &str,
        input: Payload,
        now_ms: i64,
    ) -> CoreResult<u64> {
        if let Some(&existing) = self.current_run_by_workflow_id.get(workflow_id) {
            if self.runs[existing as usize].status == RunStatus::Running {
                return Err(CoreError::WorkflowAlreadyStarted(workflow_id.to_string()));
            }
        }
        let run_key = self.runs.len() as u64;
        self.runs.push(RunRecord {
            workflow_id: workflow_id.to_string(),
            run_id: run_id.to_string(),
            workflow_type: workflow_type.to_string(),
            task_queue: task_queue.to_string(),
            status: RunStatus::Running,
            events: Vec::new(),
            workflow_task: WorkflowTaskSlot::Idle,
            consecutive_task_failures: 0,
            last_task_failure: None,
            started_ms: now_ms,
            closed_ms: None,
            open_timers: BTreeSet::new(),
            open_activities: BTreeSet::new(),
        });
        self.current_run_by_workflow_id
            .insert(workflow_id.to_string(), run_key);
        self.append(
            run_key,
            now_ms,
            EventAttributes::WorkflowStarted(Box::new(WorkflowStartedAttributes {
                workflow_type: workflow_type.to_string(),
                workflow_id: workflow_id.to_string(),
                run_id: run_id.to_string(),
                task_queue: task_queue.to_string(),
                input,
            })),
        );
        self.request_workflow_task(run_key, now_ms);
        Ok(run_key)
    }

    /// Leases the oldest ready workflow task of `task_queue`.
    pub fn poll_workflow_task(
        &mut self,
        task_queue: &str,
        now_ms: i64,
        lease_ms: u64,
    ) -> Option<WorkflowTaskLease> {
        let queue = self.workflow_queues.get_mut(task_queue)?;
        let &(ready_at_ms, run_key) = queue.first()?;
        if ready_at_ms > now_ms {
            return None;
        }
        queue.remove(&(ready_at_ms, run_key));
        let token = self.issue_token();
        let deadline_ms = now_ms.saturating_add(lease_ms as i64);
        let run = &mut self.runs[run_key as usize];
        run.workflow_task = WorkflowTaskSlot::Leased { token, deadline_ms };
        let lease = WorkflowTaskLease {
            run_key,
            token,
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
            workflow_type: run.workflow_type.clone(),
            history_length: run.events.len() as u64,
            deadline_ms,
        };
        self.deadlines
            .insert((deadline_ms, Deadline::WorkflowTaskLease { run_key, token }));
        Some(lease)
    }

    fn check_workflow_task_lease(&self, run_key: u64, token: u64, now_ms: i64) -> CoreResult<()> {
        let run = self.run(run_key)?;
        match run.workflow_task {
            WorkflowTaskSlot::Leased {
                token: held,
                deadline_ms,
            } if held == token && now_ms <= deadline_ms => Ok(()),
            _ => Err(CoreError::StaleTask(format!(
                "workflow task {token} of {}",
                run.workflow_id
            ))),
        }
    }

    /// Commits a workflow task's outcome atomically: its events (boundary first), the activity
    /// tasks and timers they create, and the run's new status. Fenced by the lease token.
    pub fn complete_workflow_task(
        &mut self,
        run_key: u64,
        token: u64,
        outcome: Vec<EventAttributes>,
        now_ms: i64,
    ) -> CoreResult<bool> {
        self.complete_workflow_task_at(run_key, token, outcome, now_ms, now_ms)
    }

    /// [`Self::complete_workflow_task`], recording the task's events at `task_time_ms`: the
    /// time its workflow code saw, which replay must hand it again.
    pub fn complete_workflow_task_at(
        &mut self,
        run_key: u64,
        token: u64,
        outcome: Vec<EventAttributes>,
        now_ms: i64,
        task_time_ms: i64,
    ) -> CoreResult<bool> {
        self.check_workflow_task_lease(run_key, token, now_ms)?;
        let history_length = self.runs[run_key as usize].events.len() as u64;
        let seen = match outcome.first() {
            Some(EventAttributes::WorkflowTaskCompleted { seen_event_id, .. }) => {
                if *seen_event_id > history_length {
                    return Err(CoreError::InvalidCommand(format!(
                        "task saw event {seen_event_id} but the history has {history_length}"
                    )));
                }
                Some(*seen_event_id)
            }
            Some(other) => {
                return Err(CoreError::InvalidCommand(format!(
                    "a workflow task outcome starts with its boundary, not {}",
                    other.kind()
                )))
            }
            // An empty outcome: the task had nothing new to do (a spurious wake-up).
            None => None,
        };
        if outcome
            .iter()
            .skip(1)
            .any(|event| event.role() != EventRole::Command)
        {
            return Err(CoreError::InvalidCommand(
                "a workflow task outcome holds its boundary and command events only".into(),
            ));
        }
        {
            let run = &mut self.runs[run_key as usize];
            run.workflow_task = WorkflowTaskSlot::Idle;
            run.consecutive_task_failures = 0;
            run.last_task_failure = None;
        }
        // All of the task's events go in first, then their effects: an effect that records an
        // event itself (a cancelled activity) must not split the task's command events, which
        // replay reads as one block right after the boundary.
        let closes = outcome.iter().any(EventAttributes::is_terminal);
        let first_event_id = history_length + 1;
        let count = outcome.len() as u64;
        for attributes in outcome {
            self.append(run_key, task_time_ms, attributes);
        }
        for event_id in first_event_id..first_event_id + count {
            self.apply_outcome_effect(run_key, event_id, closes, now_ms);
        }
        let seen = seen.unwrap_or(history_length);
        let run = &self.runs[run_key as usize];
        let unseen_inbound = run.events[seen as usize..]
            .iter()
            .any(|event| event.attributes.role() == EventRole::Inbound);
        if unseen_inbound {
            self.request_workflow_task(run_key, now_ms);
        }
        Ok(self.runs[run_key as usize].status != RunStatus::Running)
    }

    /// Applies the effect of committed event `event_id`. `closes`: the same task closed the
    /// run, so nothing may be recorded after its terminal event.
    fn apply_outcome_effect(&mut self, run_key: u64, event_id: u64, closes: bool, now_ms: i64) {
        // The effect borrows its event; a clone frees `self` for the changes it makes.
        let attributes = self.runs[run_key as usize].events[event_id as usize - 1]
            .attributes
            .clone();
        match effect_of(&attributes) {
            Some(Effect::ScheduleActivity {
                activity_type,
                input,
                options,
            }) => self.create_activity_task(
                run_key,
                event_id,
                activity_type.to_string(),
                input.clone(),
                options.clone(),
                now_ms,
            ),
            Some(Effect::StartTimer { duration_ms }) => {
                self.runs[run_key as usize].open_timers.insert(event_id);
                let fire_at = now_ms.saturating_add(duration_ms as i64);
                self.deadlines.insert((
                    fire_at,
                    Deadline::Timer {
                        run_key,
                        started_event_id: event_id,
                    },
                ));
            }
            Some(Effect::CancelTimer { started_event_id }) => {
                self.runs[run_key as usize]
                    .open_timers
                    .remove(&started_event_id);
            }
            // When the task also closed the run, close_run drops the activity instead.
            Some(Effect::CancelActivity { scheduled_event_id }) if !closes => {
                self.cancel_activity_task(run_key, scheduled_event_id, now_ms);
            }
            Some(Effect::CancelActivity { .. }) | None => {}
            Some(Effect::Close(status)) => self.close_run(run_key, status, now_ms),
        }
    }

    /// Closes a run and drops its pending work: no task of a closed run is ever handed out.
    pub(super) fn close_run(&mut self, run_key: u64, status: RunStatus, now_ms: i64) {
        let run = &mut self.runs[run_key as usize];
        run.status = status;
        run.closed_ms = Some(now_ms);
        run.open_timers.clear();
        if let WorkflowTaskSlot::Queued { ready_at_ms } = run.workflow_task {
            if let Some(queue) = self.workflow_queues.get_mut(&run.task_queue) {
                queue.remove(&(ready_at_ms, run_key));
            }
        }
        run.workflow_task = WorkflowTaskSlot::Idle;
        let open = std::mem::take(&mut run.open_activities);
        for activity_id in open {
            self.drop_activity_task(activity_id);
        }
    }

    /// The workflow code failed this task (an exception in the engine's path, a workflow that
    /// escaped its deterministic loop, non-determinism): nothing is recorded, and the task is
    /// retried after a growing delay so a fixed deployment can pick it up.
    pub fn fail_workflow_task(
        &mut self,
        run_key: u64,
        token: u64,
        message: &str,
        now_ms: i64,
    ) -> CoreResult<()> {
        self.check_workflow_task_lease(run_key, token, now_ms)?;
        let initial = self.config.workflow_task_retry_initial_ms;
        let maximum = self.config.workflow_task_retry_maximum_ms;
        let run = &mut self.runs[run_key as usize];
        run.workflow_task = WorkflowTaskSlot::Idle;
        run.consecutive_task_failures += 1;
        run.last_task_failure = Some(message.to_string());
        let exponent = run.consecutive_task_failures.saturating_sub(1).min(32);
        let delay = initial.saturating_mul(1u64 << exponent).min(maximum);
        self.request_workflow_task(run_key, now_ms.saturating_add(delay as i64));
        Ok(())
    }

    pub fn signal_workflow(
        &mut self,
        workflow_id: &str,
        signal_name: &str,
        input: Payload,
        now_ms: i64,
    ) -> CoreResult<()> {
        let run_key = self.running_run_key(workflow_id)?;
        self.append(
            run_key,
            now_ms,
            EventAttributes::WorkflowSignaled {
                signal_name: signal_name.to_string(),
                input,
            },
        );
        self.request_workflow_task(run_key, now_ms);
        Ok(())
    }

    pub fn request_cancel_workflow(
        &mut self,
        workflow_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> CoreResult<()> {
        let run_key = self.running_run_key(workflow_id)?;
        let already = self.runs[run_key as usize].events.iter().any(|event| {
            matches!(
                event.attributes,
                EventAttributes::WorkflowCancelRequested { .. }
            )
        });
        if already {
            return Ok(());
        }
        self.append(
            run_key,
            now_ms,
            EventAttributes::WorkflowCancelRequested {
                reason: reason.to_string(),
            },
        );
        self.request_workflow_task(run_key, now_ms);
        Ok(())
    }

    pub fn terminate_workflow(
        &mut self,
        workflow_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> CoreResult<()> {
        let run_key = self.running_run_key(workflow_id)?;
        self.append(
            run_key,
            now_ms,
            EventAttributes::WorkflowTerminated {
                reason: reason.to_string(),
            },
        );
        self.close_run(run_key, RunStatus::Terminated, now_ms);
        Ok(())
    }

    pub fn describe(&self, workflow_id: &str) -> CoreResult<RunSummary> {
        let run_key = self.current_run_key(workflow_id)?;
        Ok(self.runs[run_key as usize].summary(run_key))
    }

    pub fn list(&self) -> Vec<RunSummary> {
        self.runs
            .iter()
            .enumerate()
            .map(|(run_key, run)| run.summary(run_key as u64))
            .collect()
    }

    /// Events of a run from `from_event_id` (1-based, inclusive) to the end.
    pub fn history(&self, run_key: u64, from_event_id: u64) -> CoreResult<&[Event]> {
        let events = &self.run(run_key)?.events;
        let start = (from_event_id.max(1) - 1).min(events.len() as u64) as usize;
        Ok(&events[start..])
    }

    pub(super) fn failure_of_timeout(kind: &str) -> Failure {
        Failure::new(format!("activity {kind} timeout"), "ActivityTimeout")
    }
}
