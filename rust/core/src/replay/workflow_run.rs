//! One run's replay state: its known history, where replay has got to, and the command machines.
//!
//! Protocol, driven by the worker once per workflow task:
//! 1. [`WorkflowRun::add_events`] with the history tail fetched from storage.
//! 2. Loop [`WorkflowRun::next_activation`] → run workflow code → [`WorkflowRun::complete`].
//!    Activations before the last recorded task boundary are replays: their commands are checked
//!    against the recorded events. The activation after it is live: its completion returns the
//!    events to commit (a `WorkflowTaskCompleted` boundary first, then one event per command).
//! 3. A live completion's events come back in the next fetched tail; the run checks they are the
//!    ones it produced and learns their event ids (the store assigns ids, since a signal may land
//!    while the task runs).
//!
//! Every event is visited a bounded number of times, so a whole replay is linear in history size.

use std::collections::BTreeMap;

use super::activation::{Activation, ActivityResolution, Job};
use super::activity_machine::{ActivityInput, ActivityState};
use super::commands::{describe_recorded, Command};
use super::timer_machine::{TimerInput, TimerState};
use crate::error::{CoreError, CoreResult};
use crate::history::{Event, EventAttributes, EventRole};

/// Engine behaviour flags written on every task boundary this build records. Bits are only ever
/// added; replay of an old history reads the flags it was recorded with.
pub const ENGINE_FLAGS: u64 = 0;

#[derive(Debug)]
enum Phase {
    /// Ready to hand out the next activation.
    Idle,
    /// A replay activation is out; its completion must match the events after this boundary.
    Replaying { boundary_index: usize },
    /// A live activation is out; its completion produces new events.
    Live { seen_event_id: u64 },
    /// A live completion was handed to storage; its events have not come back yet.
    AwaitingCommit {
        seen_event_id: u64,
        expected: Vec<EventAttributes>,
    },
}

#[derive(Debug)]
pub struct WorkflowRun {
    events: Vec<Event>,
    /// Index just past the last task's recorded command events: where the next boundary search
    /// starts.
    scan_index: usize,
    /// `seen_event_id` of the last task processed: inbound events after it are undelivered.
    last_seen: u64,
    activities: BTreeMap<u32, ActivityState>,
    activity_seq_by_event: BTreeMap<u64, u32>,
    timers: BTreeMap<u32, TimerState>,
    timer_seq_by_event: BTreeMap<u64, u32>,
    phase: Phase,
    closed: bool,
}

impl Default for WorkflowRun {
    fn default() -> Self {
        Self::new()
    }
}

fn non_determinism(event_id: u64, recorded: String, issued: String) -> CoreError {
    CoreError::NonDeterminism {
        event_id,
        recorded,
        issued,
    }
}

impl WorkflowRun {
    pub fn new() -> Self {
        WorkflowRun {
            events: Vec::new(),
            scan_index: 0,
            last_seen: 0,
            activities: BTreeMap::new(),
            activity_seq_by_event: BTreeMap::new(),
            timers: BTreeMap::new(),
            timer_seq_by_event: BTreeMap::new(),
            phase: Phase::Idle,
            closed: false,
        }
    }

    /// Number of events known (the id of the last one).
    pub fn history_length(&self) -> u64 {
        self.events.len() as u64
    }

    /// True once a terminal event or command has been seen: no more activations.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Appends fetched events; they must continue the ids densely.
    pub fn add_events(&mut self, events: Vec<Event>) -> CoreResult<()> {
        for event in events {
            let expected = self.events.len() as u64 + 1;
            if event.event_id != expected {
                return Err(CoreError::InvalidHistory {
                    event_id: event.event_id,
                    reason: format!("expected event id {expected}: ids must be dense"),
                });
            }
            self.events.push(event);
        }
        Ok(())
    }

    fn find_boundary(&self, from: usize) -> Option<usize> {
        self.events[from.min(self.events.len())..]
            .iter()
            .position(|event| event.attributes.role() == EventRole::TaskBoundary)
            .map(|offset| from + offset)
    }

    /// Number of command events recorded right after the boundary at `boundary_index`.
    fn recorded_command_count(&self, boundary_index: usize) -> usize {
        self.events[boundary_index + 1..]
            .iter()
            .take_while(|event| event.attributes.role() == EventRole::Command)
            .count()
    }

    /// The next activation, or `None` when there is nothing to deliver. With `allow_live` false
    /// only replay activations are returned (used to rebuild state for a query).
    pub fn next_activation(
        &mut self,
        now_ms: i64,
        allow_live: bool,
    ) -> CoreResult<Option<Activation>> {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => {}
            Phase::AwaitingCommit {
                seen_event_id,
                expected,
            } => self.acknowledge_commit(seen_event_id, expected)?,
            other => {
                self.phase = other;
                return Err(CoreError::InvalidCommand(
                    "an activation was requested before the previous one was completed".into(),
                ));
            }
        }
        if self.closed {
            return Ok(None);
        }
        if let Some(boundary_index) = self.find_boundary(self.scan_index) {
            let boundary = &self.events[boundary_index];
            let EventAttributes::WorkflowTaskCompleted { seen_event_id, .. } = boundary.attributes
            else {
                unreachable!("find_boundary returns task boundaries only")
            };
            let now_ms = boundary.timestamp_ms;
            let jobs = self.collect_jobs(seen_event_id)?;
            self.phase = Phase::Replaying { boundary_index };
            return Ok(Some(Activation {
                replaying: true,
                now_ms,
                jobs,
            }));
        }
        if !allow_live {
            return Ok(None);
        }
        let end = self.history_length();
        let has_inbound = self.events[self.last_seen as usize..]
            .iter()
            .any(|event| event.attributes.role() == EventRole::Inbound);
        if !has_inbound {
            return Ok(None);
        }
        let jobs = self.collect_jobs(end)?;
        if self.closed {
            // Terminated from outside while the task was pending: nothing to run.
            return Ok(None);
        }
        self.phase = Phase::Live { seen_event_id: end };
        Ok(Some(Activation {
            replaying: false,
            now_ms,
            jobs,
        }))
    }

    /// Jobs for the inbound events after `last_seen` up to `seen_event_id`, advancing machines.
    fn collect_jobs(&mut self, seen_event_id: u64) -> CoreResult<Vec<Job>> {
        let mut jobs = Vec::new();
        let from = self.last_seen as usize;
        for index in from..seen_event_id as usize {
            let event = &self.events[index];
            match event.attributes.role() {
                EventRole::Inbound => {}
                EventRole::External => {
                    self.closed = true;
                    continue;
                }
                _ => continue,
            }
            let job = self.job_for(index)?;
            jobs.push(job);
        }
        Ok(jobs)
    }

    fn activity_seq(&self, event_id: u64, scheduled_event_id: u64) -> CoreResult<u32> {
        self.activity_seq_by_event
            .get(&scheduled_event_id)
            .copied()
            .ok_or_else(|| CoreError::InvalidHistory {
                event_id,
                reason: format!("refers to unknown activity event {scheduled_event_id}"),
            })
    }

    fn advance_activity(
        &mut self,
        event_id: u64,
        seq: u32,
        input: ActivityInput,
    ) -> CoreResult<()> {
        let state =
            self.activities
                .get(&seq)
                .copied()
                .ok_or_else(|| CoreError::InvalidHistory {
                    event_id,
                    reason: format!("no activity with seq {seq}"),
                })?;
        let next = state
            .on(input)
            .map_err(|reason| CoreError::InvalidHistory { event_id, reason })?;
        self.activities.insert(seq, next);
        Ok(())
    }

    fn advance_timer(&mut self, event_id: u64, seq: u32, input: TimerInput) -> CoreResult<()> {
        let state = self
            .timers
            .get(&seq)
            .copied()
            .ok_or_else(|| CoreError::InvalidHistory {
                event_id,
                reason: format!("no timer with seq {seq}"),
            })?;
        let next = state
            .on(input)
            .map_err(|reason| CoreError::InvalidHistory { event_id, reason })?;
        self.timers.insert(seq, next);
        Ok(())
    }

    fn job_for(&mut self, index: usize) -> CoreResult<Job> {
        let event_id = self.events[index].event_id;
        let attributes = self.events[index].attributes.clone();
        let resolve = |run: &mut Self, scheduled: u64, attempt: u32, resolution| {
            let seq = run.activity_seq(event_id, scheduled)?;
            run.advance_activity(event_id, seq, ActivityInput::Resolution)?;
            Ok::<Job, CoreError>(Job::ResolveActivity {
                seq,
                attempt,
                resolution,
            })
        };
        Ok(match attributes {
            EventAttributes::WorkflowStarted {
                workflow_type,
                workflow_id,
                run_id,
                task_queue,
                input,
            } => Job::StartWorkflow {
                workflow_type,
                workflow_id,
                run_id,
                task_queue,
                input,
            },
            EventAttributes::ActivityCompleted {
                scheduled_event_id,
                result,
                attempt,
            } => resolve(
                self,
                scheduled_event_id,
                attempt,
                ActivityResolution::Completed { result },
            )?,
            EventAttributes::ActivityFailed {
                scheduled_event_id,
                failure,
                attempt,
            } => resolve(
                self,
                scheduled_event_id,
                attempt,
                ActivityResolution::Failed { failure },
            )?,
            EventAttributes::ActivityTimedOut {
                scheduled_event_id,
                timeout_type,
                last_failure,
                attempt,
            } => resolve(
                self,
                scheduled_event_id,
                attempt,
                ActivityResolution::TimedOut {
                    timeout_type,
                    last_failure,
                },
            )?,
            EventAttributes::ActivityCanceled {
                scheduled_event_id,
                attempt,
            } => resolve(
                self,
                scheduled_event_id,
                attempt,
                ActivityResolution::Canceled,
            )?,
            EventAttributes::TimerFired { started_event_id } => {
                let seq = self
                    .timer_seq_by_event
                    .get(&started_event_id)
                    .copied()
                    .ok_or_else(|| CoreError::InvalidHistory {
                        event_id,
                        reason: format!("refers to unknown timer event {started_event_id}"),
                    })?;
                self.advance_timer(event_id, seq, TimerInput::Fired)?;
                Job::FireTimer { seq }
            }
            EventAttributes::WorkflowSignaled { signal_name, input } => Job::Signal {
                name: signal_name,
                input,
            },
            EventAttributes::WorkflowCancelRequested { reason } => Job::CancelWorkflow { reason },
            other => {
                return Err(CoreError::InvalidHistory {
                    event_id,
                    reason: format!("{} is not an inbound event", other.kind()),
                })
            }
        })
    }

    /// Applies a command to its machine and returns the event it records, or `None` for a
    /// no-op (cancelling something already finished).
    fn apply_command(&mut self, command: &Command) -> CoreResult<Option<EventAttributes>> {
        let invalid = |reason: String| CoreError::InvalidCommand(reason);
        Ok(Some(match command {
            Command::ScheduleActivity {
                seq,
                activity_type,
                input,
                options,
            } => {
                if self.activities.contains_key(seq) {
                    return Err(invalid(format!("activity seq {seq} used twice")));
                }
                self.activities
                    .insert(*seq, ActivityState::ScheduleCommandCreated);
                EventAttributes::ActivityScheduled {
                    seq: *seq,
                    activity_type: activity_type.clone(),
                    input: input.clone(),
                    options: options.clone(),
                }
            }
            Command::RequestCancelActivity { seq } => {
                let state = *self
                    .activities
                    .get(seq)
                    .ok_or_else(|| invalid(format!("cancel of unknown activity seq {seq}")))?;
                let next = state.on(ActivityInput::CancelCommand).map_err(invalid)?;
                self.activities.insert(*seq, next);
                match next {
                    ActivityState::CancelCommandCreated { scheduled_event_id } => {
                        EventAttributes::ActivityCancelRequested { scheduled_event_id }
                    }
                    _ => return Ok(None),
                }
            }
            Command::StartTimer { seq, duration_ms } => {
                if self.timers.contains_key(seq) {
                    return Err(invalid(format!("timer seq {seq} used twice")));
                }
                self.timers.insert(*seq, TimerState::StartCommandCreated);
                EventAttributes::TimerStarted {
                    seq: *seq,
                    duration_ms: *duration_ms,
                }
            }
            Command::CancelTimer { seq } => {
                let state = *self
                    .timers
                    .get(seq)
                    .ok_or_else(|| invalid(format!("cancel of unknown timer seq {seq}")))?;
                let next = state.on(TimerInput::CancelCommand).map_err(invalid)?;
                self.timers.insert(*seq, next);
                match next {
                    TimerState::CancelCommandCreated { started_event_id } => {
                        EventAttributes::TimerCanceled { started_event_id }
                    }
                    _ => return Ok(None),
                }
            }
            Command::CompleteWorkflow { result } => EventAttributes::WorkflowCompleted {
                result: result.clone(),
            },
            Command::FailWorkflow { failure } => EventAttributes::WorkflowFailed {
                failure: failure.clone(),
            },
            Command::CancelWorkflow { details } => EventAttributes::WorkflowCanceled {
                details: details.clone(),
            },
        }))
    }

    /// A recorded command event: moves its machine to the recorded state and learns its id.
    fn record_command_event(&mut self, index: usize) -> CoreResult<()> {
        let event_id = self.events[index].event_id;
        match &self.events[index].attributes {
            EventAttributes::ActivityScheduled { seq, .. } => {
                let seq = *seq;
                self.advance_activity(event_id, seq, ActivityInput::ScheduleRecorded { event_id })?;
                self.activity_seq_by_event.insert(event_id, seq);
            }
            EventAttributes::ActivityCancelRequested { scheduled_event_id } => {
                let seq = self.activity_seq(event_id, *scheduled_event_id)?;
                self.advance_activity(event_id, seq, ActivityInput::CancelRecorded)?;
            }
            EventAttributes::TimerStarted { seq, .. } => {
                let seq = *seq;
                self.advance_timer(event_id, seq, TimerInput::StartRecorded { event_id })?;
                self.timer_seq_by_event.insert(event_id, seq);
            }
            EventAttributes::TimerCanceled { started_event_id } => {
                let seq = *self
                    .timer_seq_by_event
                    .get(started_event_id)
                    .ok_or_else(|| CoreError::InvalidHistory {
                        event_id,
                        reason: format!("refers to unknown timer event {started_event_id}"),
                    })?;
                self.advance_timer(event_id, seq, TimerInput::CancelRecorded)?;
            }
            attributes if attributes.is_terminal() => self.closed = true,
            other => {
                return Err(CoreError::InvalidHistory {
                    event_id,
                    reason: format!("{} is not a command event", other.kind()),
                })
            }
        }
        Ok(())
    }

    /// Whether a recorded command event is the one workflow code issued (kind and identity;
    /// inputs are not compared, as in Temporal, so fixing an argument is not a divergence).
    fn same_command(expected: &EventAttributes, recorded: &EventAttributes) -> bool {
        use EventAttributes as E;
        match (expected, recorded) {
            (
                E::ActivityScheduled {
                    seq: a,
                    activity_type: type_a,
                    ..
                },
                E::ActivityScheduled {
                    seq: b,
                    activity_type: type_b,
                    ..
                },
            ) => a == b && type_a == type_b,
            (E::TimerStarted { seq: a, .. }, E::TimerStarted { seq: b, .. }) => a == b,
            (
                E::ActivityCancelRequested {
                    scheduled_event_id: a,
                },
                E::ActivityCancelRequested {
                    scheduled_event_id: b,
                },
            ) => a == b,
            (
                E::TimerCanceled {
                    started_event_id: a,
                },
                E::TimerCanceled {
                    started_event_id: b,
                },
            ) => a == b,
            (E::WorkflowCompleted { .. }, E::WorkflowCompleted { .. })
            | (E::WorkflowFailed { .. }, E::WorkflowFailed { .. })
            | (E::WorkflowCanceled { .. }, E::WorkflowCanceled { .. }) => true,
            _ => false,
        }
    }

    /// Completes the outstanding activation with workflow code's commands. Returns the events
    /// to commit for a live activation (boundary first) and nothing for a replayed one.
    pub fn complete(&mut self, commands: Vec<Command>) -> CoreResult<Vec<EventAttributes>> {
        // Workflow code stops at its first terminal command; anything after it is dropped.
        let end = commands
            .iter()
            .position(Command::is_terminal)
            .map_or(commands.len(), |index| index + 1);
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Replaying { boundary_index } => {
                self.complete_replay(boundary_index, &commands[..end])?;
                Ok(Vec::new())
            }
            Phase::Live { seen_event_id } => {
                let mut events = Vec::with_capacity(end + 1);
                events.push(EventAttributes::WorkflowTaskCompleted {
                    seen_event_id,
                    flags: ENGINE_FLAGS,
                });
                for command in &commands[..end] {
                    if let Some(attributes) = self.apply_command(command)? {
                        events.push(attributes);
                    }
                }
                if commands[..end].iter().any(Command::is_terminal) {
                    self.closed = true;
                }
                self.phase = Phase::AwaitingCommit {
                    seen_event_id,
                    expected: events[1..].to_vec(),
                };
                Ok(events)
            }
            other => {
                self.phase = other;
                Err(CoreError::InvalidCommand(
                    "a completion arrived with no activation outstanding".into(),
                ))
            }
        }
    }

    fn complete_replay(&mut self, boundary_index: usize, commands: &[Command]) -> CoreResult<()> {
        let EventAttributes::WorkflowTaskCompleted { seen_event_id, .. } =
            self.events[boundary_index].attributes
        else {
            unreachable!("Replaying always points at a task boundary")
        };
        let recorded_count = self.recorded_command_count(boundary_index);
        let mut next = boundary_index + 1;
        for command in commands {
            let Some(expected) = self.apply_command(command)? else {
                continue;
            };
            if next >= boundary_index + 1 + recorded_count {
                let event_id = self.events[boundary_index].event_id;
                return Err(non_determinism(
                    event_id,
                    "no further command for this workflow task".into(),
                    command.describe(),
                ));
            }
            let recorded = &self.events[next];
            if !Self::same_command(&expected, &recorded.attributes) {
                return Err(non_determinism(
                    recorded.event_id,
                    describe_recorded(&recorded.attributes),
                    command.describe(),
                ));
            }
            self.record_command_event(next)?;
            next += 1;
        }
        if next < boundary_index + 1 + recorded_count {
            let recorded = &self.events[next];
            return Err(non_determinism(
                recorded.event_id,
                describe_recorded(&recorded.attributes),
                "no command".into(),
            ));
        }
        self.scan_index = next;
        self.last_seen = seen_event_id;
        Ok(())
    }

    /// The events of our own live completion came back from storage: check and learn their ids.
    fn acknowledge_commit(
        &mut self,
        seen_event_id: u64,
        expected: Vec<EventAttributes>,
    ) -> CoreResult<()> {
        let missing = || CoreError::InvalidHistory {
            event_id: seen_event_id,
            reason: "the workflow task this worker completed is not in the fetched history".into(),
        };
        let boundary_index = self.find_boundary(self.scan_index).ok_or_else(missing)?;
        match self.events[boundary_index].attributes {
            EventAttributes::WorkflowTaskCompleted {
                seen_event_id: recorded_seen,
                ..
            } if recorded_seen == seen_event_id => {}
            _ => return Err(missing()),
        }
        for (offset, attributes) in expected.iter().enumerate() {
            let index = boundary_index + 1 + offset;
            let matches = self
                .events
                .get(index)
                .is_some_and(|event| Self::same_command(attributes, &event.attributes));
            if !matches {
                return Err(missing());
            }
            self.record_command_event(index)?;
        }
        self.scan_index = boundary_index + 1 + expected.len();
        self.last_seen = seen_event_id;
        Ok(())
    }
}
