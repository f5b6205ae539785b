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
//!
//! A run keeps only the events replay still needs: those from the earlier of the last task's
//! end and the first undelivered inbound event on. Events behind both are dropped (in bulk,
//! once they are at least half of what is kept, so dropping is linear too); the seq of each
//! open activity and timer is kept by the id of the event that scheduled it, which is all
//! later events need of it. A cached run's memory follows what is open, not history length.

use std::collections::BTreeMap;

use super::activation::{Activation, ActivityResolution, Job};
use super::activity_machine::{ActivityInput, ActivityState};
use super::commands::{describe_recorded, Command};
use super::seq_table::SeqTable;
use super::timer_machine::{TimerInput, TimerState};
use crate::error::{CoreError, CoreResult};
use crate::history::{flags, Event, EventAttributes, EventRole, HistoryValidator};

pub use crate::history::flags::ENGINE_FLAGS;

#[derive(Debug)]
enum Phase {
    /// Ready to hand out the next activation.
    Idle,
    /// A replay activation is out; its completion must match the events after this boundary.
    Replaying { boundary_index: usize },
    /// A live activation is out, delivered at `now_ms`; its completion produces new events.
    Live { seen_event_id: u64, now_ms: i64 },
    /// A live completion was handed to storage; its events have not come back yet.
    AwaitingCommit {
        seen_event_id: u64,
        recorded: Vec<Command>,
    },
}

#[derive(Debug)]
pub struct WorkflowRun {
    /// The events kept: `events[0]` is event `dropped + 1`. Positions below (`scan_index`,
    /// boundary and event positions) count from event 1, whatever has been dropped.
    events: Vec<Event>,
    /// Events dropped from the front (replay is past them).
    dropped: usize,
    /// Open activities and timers: the id of the event that scheduled or started each → its
    /// seq (what resolving events refer to).
    open_activities: BTreeMap<u64, u32>,
    open_timers: BTreeMap<u64, u32>,
    /// Position just past the last task's recorded command events: where the next boundary search
    /// starts.
    scan_index: usize,
    /// `seen_event_id` of the last task processed: inbound events after it are undelivered.
    last_seen: u64,
    activities: SeqTable<ActivityState>,
    timers: SeqTable<TimerState>,
    phase: Phase,
    closed: bool,
    /// Every event added is checked against the history's invariants (and its flags against
    /// the ones this build knows) before replay sees it.
    validator: HistoryValidator,
    /// Signals the live activation's code dropped (undecodable): recorded on its boundary.
    dropped_signals: u32,
}

impl Default for WorkflowRun {
    fn default() -> Self {
        Self::new()
    }
}

/// Under [`flags::STAGED_JOBS`] an activation's signals come first (in history order), then
/// its other jobs (in history order): the workflow side applies the leading signals and runs
/// its loop to idle before the rest. Without the flag, jobs stay in history order.
fn staged(mut jobs: Vec<Job>, flags: u64) -> Vec<Job> {
    let is_signal = |job: &Job| matches!(job, Job::Signal { .. });
    if flags & flags::STAGED_JOBS != 0
        && jobs.iter().skip_while(|job| is_signal(job)).any(is_signal)
    {
        let (mut signals, others): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(is_signal);
        signals.extend(others);
        jobs = signals;
    }
    jobs
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
            dropped: 0,
            open_activities: BTreeMap::new(),
            open_timers: BTreeMap::new(),
            scan_index: 0,
            last_seen: 0,
            activities: SeqTable::default(),
            timers: SeqTable::default(),
            phase: Phase::Idle,
            closed: false,
            validator: HistoryValidator::default(),
            dropped_signals: 0,
        }
    }

    /// Number of events known (the id of the last one).
    pub fn history_length(&self) -> u64 {
        (self.dropped + self.events.len()) as u64
    }

    /// True once a terminal event or command has been seen: no more activations.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The events still kept (replay has dropped the ones before them).
    pub fn retained_events(&self) -> &[Event] {
        &self.events
    }

    /// Roughly the heap bytes the kept events hold: what a worker's cache bound counts.
    pub fn retained_bytes(&self) -> usize {
        self.events
            .iter()
            .map(|event| std::mem::size_of::<Event>() + event.attributes.heap_bytes())
            .sum::<usize>()
            + (self.open_activities.len() + self.open_timers.len()) * 16
    }

    /// The event at `position` (event id - 1), which must still be kept.
    fn at(&self, position: usize) -> &Event {
        &self.events[position - self.dropped]
    }

    /// Drops the events replay is past: before both the next boundary search and the first
    /// undelivered inbound event.
    fn drop_replayed(&mut self) {
        let keep_from = self.scan_index.min(self.last_seen as usize);
        let behind = keep_from.saturating_sub(self.dropped);
        if behind > 0 && behind * 2 >= self.events.len() {
            self.events.drain(..behind);
            self.dropped += behind;
        }
    }

    /// Appends fetched events. They must continue the ids densely and keep the history valid
    /// (`docs/history-format.md`, "Validation on load"); a history from a newer engine is
    /// refused.
    pub fn add_events(&mut self, events: Vec<Event>) -> CoreResult<()> {
        self.validator.check(&events)?;
        if self.events.is_empty() {
            // A whole history: keep the decoded vector instead of moving every event again.
            self.events = events;
            self.events.shrink_to_fit();
        } else {
            self.events.extend(events);
        }
        Ok(())
    }

    fn find_boundary(&self, from: usize) -> Option<usize> {
        let from = from.max(self.dropped);
        self.events[(from - self.dropped).min(self.events.len())..]
            .iter()
            .position(|event| event.attributes.role() == EventRole::TaskBoundary)
            .map(|offset| from + offset)
    }

    /// Number of command events recorded right after the boundary at `boundary_index`.
    fn recorded_command_count(&self, boundary_index: usize) -> usize {
        self.events[boundary_index + 1 - self.dropped..]
            .iter()
            .take_while(|event| event.attributes.role() == EventRole::Command)
            .count()
    }

    /// Whether the outstanding activation is a replayed one (its commands are only matched).
    pub fn is_replaying(&self) -> bool {
        matches!(self.phase, Phase::Replaying { .. })
    }

    /// The time the outstanding live activation was delivered at (what the workflow code saw
    /// as now), if one is out. Its outcome must be recorded with this time: replay hands the
    /// recorded time to the code again.
    pub fn live_now_ms(&self) -> Option<i64> {
        match self.phase {
            Phase::Live { now_ms, .. } => Some(now_ms),
            _ => None,
        }
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
                recorded,
            } => self.acknowledge_commit(seen_event_id, recorded)?,
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
            let boundary = self.at(boundary_index);
            let EventAttributes::WorkflowTaskCompleted {
                seen_event_id,
                flags,
                ..
            } = boundary.attributes
            else {
                unreachable!("find_boundary returns task boundaries only")
            };
            let now_ms = boundary.timestamp_ms;
            let jobs = staged(self.collect_jobs(seen_event_id)?, flags);
            self.phase = Phase::Replaying { boundary_index };
            return Ok(Some(Activation {
                replaying: true,
                now_ms,
                jobs,
                flags,
            }));
        }
        if !allow_live {
            return Ok(None);
        }
        let end = self.history_length();
        let has_inbound = self.events[self.last_seen as usize - self.dropped..]
            .iter()
            .any(|event| event.attributes.role() == EventRole::Inbound);
        if !has_inbound {
            return Ok(None);
        }
        let jobs = staged(self.collect_jobs(end)?, ENGINE_FLAGS);
        if self.closed {
            // Terminated from outside while the task was pending: nothing to run.
            return Ok(None);
        }
        self.phase = Phase::Live {
            seen_event_id: end,
            now_ms,
        };
        Ok(Some(Activation {
            replaying: false,
            now_ms,
            jobs,
            flags: ENGINE_FLAGS,
        }))
    }

    /// Jobs for the inbound events after `last_seen` up to `seen_event_id`, advancing machines.
    fn collect_jobs(&mut self, seen_event_id: u64) -> CoreResult<Vec<Job>> {
        let mut jobs = Vec::new();
        let from = self.last_seen as usize;
        for index in from..seen_event_id as usize {
            let event = self.at(index);
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

    /// The seq of the open activity scheduled by event `scheduled_event_id`, which `event_id`
    /// refers to.
    fn activity_seq(&self, event_id: u64, scheduled_event_id: u64) -> CoreResult<u32> {
        match self.open_activities.get(&scheduled_event_id) {
            Some(seq) if scheduled_event_id < event_id => Ok(*seq),
            _ => Err(CoreError::InvalidHistory {
                event_id,
                reason: format!(
                    "refers to event {scheduled_event_id}, which is not an open ActivityScheduled"
                ),
            }),
        }
    }

    fn timer_seq(&self, event_id: u64, started_event_id: u64) -> CoreResult<u32> {
        match self.open_timers.get(&started_event_id) {
            Some(seq) if started_event_id < event_id => Ok(*seq),
            _ => Err(CoreError::InvalidHistory {
                event_id,
                reason: format!(
                    "refers to event {started_event_id}, which is not an open TimerStarted"
                ),
            }),
        }
    }

    fn advance_activity(
        &mut self,
        event_id: u64,
        seq: u32,
        input: ActivityInput,
    ) -> CoreResult<()> {
        let state = self
            .activities
            .get(seq)
            .ok_or_else(|| CoreError::InvalidHistory {
                event_id,
                reason: format!("no activity with seq {seq}"),
            })?;
        let next = state
            .on(input)
            .map_err(|reason| CoreError::InvalidHistory { event_id, reason })?;
        self.activities.set(seq, next);
        Ok(())
    }

    fn advance_timer(&mut self, event_id: u64, seq: u32, input: TimerInput) -> CoreResult<()> {
        let state = self
            .timers
            .get(seq)
            .ok_or_else(|| CoreError::InvalidHistory {
                event_id,
                reason: format!("no timer with seq {seq}"),
            })?;
        let next = state
            .on(input)
            .map_err(|reason| CoreError::InvalidHistory { event_id, reason })?;
        self.timers.set(seq, next);
        Ok(())
    }

    fn job_for(&mut self, index: usize) -> CoreResult<Job> {
        let event = &self.events[index - self.dropped];
        let event_id = event.event_id;
        // Clone only what the job carries (a payload, a name), never the whole event.
        let (scheduled_event_id, attempt, resolution) = match &event.attributes {
            EventAttributes::WorkflowStarted(started) => {
                return Ok(Job::StartWorkflow {
                    workflow_type: started.workflow_type.clone(),
                    workflow_id: started.workflow_id.clone(),
                    run_id: started.run_id.clone(),
                    task_queue: started.task_queue.clone(),
                    input: started.input.clone(),
                })
            }
            EventAttributes::ActivityCompleted {
                scheduled_event_id,
                result,
                attempt,
            } => (
                *scheduled_event_id,
                *attempt,
                ActivityResolution::Completed {
                    result: result.clone(),
                },
            ),
            EventAttributes::ActivityFailed {
                scheduled_event_id,
                failure,
                attempt,
            } => (
                *scheduled_event_id,
                *attempt,
                ActivityResolution::Failed {
                    failure: failure.clone(),
                },
            ),
            EventAttributes::ActivityTimedOut {
                scheduled_event_id,
                timeout_type,
                last_failure,
                attempt,
            } => (
                *scheduled_event_id,
                *attempt,
                ActivityResolution::TimedOut {
                    timeout_type: *timeout_type,
                    last_failure: last_failure.clone(),
                },
            ),
            EventAttributes::ActivityCanceled {
                scheduled_event_id,
                attempt,
            } => (*scheduled_event_id, *attempt, ActivityResolution::Canceled),
            EventAttributes::TimerFired { started_event_id } => {
                let started_event_id = *started_event_id;
                let seq = self.timer_seq(event_id, started_event_id)?;
                self.advance_timer(event_id, seq, TimerInput::Fired)?;
                self.open_timers.remove(&started_event_id);
                return Ok(Job::FireTimer { seq });
            }
            EventAttributes::WorkflowSignaled { signal_name, input } => {
                return Ok(Job::Signal {
                    name: signal_name.clone(),
                    input: input.clone(),
                })
            }
            EventAttributes::WorkflowCancelRequested { reason } => {
                return Ok(Job::CancelWorkflow {
                    reason: reason.clone(),
                })
            }
            other => {
                return Err(CoreError::InvalidHistory {
                    event_id,
                    reason: format!("{} is not an inbound event", other.kind()),
                })
            }
        };
        let seq = self.activity_seq(event_id, scheduled_event_id)?;
        self.advance_activity(event_id, seq, ActivityInput::Resolution)?;
        self.open_activities.remove(&scheduled_event_id);
        Ok(Job::ResolveActivity {
            seq,
            attempt,
            resolution,
        })
    }

    /// Applies a command's transition to its machine. Returns whether the command records an
    /// event: cancelling something already finished is a no-op.
    fn apply_command(&mut self, command: &Command) -> CoreResult<bool> {
        let invalid = |reason: String| CoreError::InvalidCommand(reason);
        match command {
            Command::ScheduleActivity { seq, .. } => {
                if self.activities.contains(*seq) {
                    return Err(invalid(format!("activity seq {seq} used twice")));
                }
                self.activities
                    .set(*seq, ActivityState::ScheduleCommandCreated);
            }
            Command::RequestCancelActivity { seq } => {
                let state = self
                    .activities
                    .get(*seq)
                    .ok_or_else(|| invalid(format!("cancel of unknown activity seq {seq}")))?;
                let next = state.on(ActivityInput::CancelCommand).map_err(invalid)?;
                self.activities.set(*seq, next);
                return Ok(matches!(next, ActivityState::CancelCommandCreated { .. }));
            }
            Command::StartTimer { seq, .. } => {
                if self.timers.contains(*seq) {
                    return Err(invalid(format!("timer seq {seq} used twice")));
                }
                self.timers.set(*seq, TimerState::StartCommandCreated);
            }
            Command::CancelTimer { seq } => {
                let state = self
                    .timers
                    .get(*seq)
                    .ok_or_else(|| invalid(format!("cancel of unknown timer seq {seq}")))?;
                let next = state.on(TimerInput::CancelCommand).map_err(invalid)?;
                self.timers.set(*seq, next);
                return Ok(matches!(next, TimerState::CancelCommandCreated { .. }));
            }
            Command::CompleteWorkflow { .. }
            | Command::FailWorkflow { .. }
            | Command::CancelWorkflow { .. } => {}
        }
        Ok(true)
    }

    /// The event an applied command records (live path only: it clones the payloads).
    fn event_for(&self, command: &Command) -> EventAttributes {
        match command {
            Command::ScheduleActivity {
                seq,
                activity_type,
                input,
                options,
            } => EventAttributes::ActivityScheduled {
                seq: *seq,
                activity_type: activity_type.clone(),
                input: input.clone(),
                options: options.clone(),
            },
            Command::RequestCancelActivity { seq } => EventAttributes::ActivityCancelRequested {
                scheduled_event_id: self
                    .activities
                    .get(*seq)
                    .and_then(ActivityState::scheduled_event_id)
                    .unwrap_or_default(),
            },
            Command::StartTimer { seq, duration_ms } => EventAttributes::TimerStarted {
                seq: *seq,
                duration_ms: *duration_ms,
            },
            Command::CancelTimer { seq } => EventAttributes::TimerCanceled {
                started_event_id: match self.timers.get(*seq) {
                    Some(TimerState::CancelCommandCreated { started_event_id }) => started_event_id,
                    _ => 0,
                },
            },
            Command::CompleteWorkflow { result } => EventAttributes::WorkflowCompleted {
                result: result.clone(),
            },
            Command::FailWorkflow { failure } => EventAttributes::WorkflowFailed {
                failure: failure.clone(),
            },
            Command::CancelWorkflow { details } => EventAttributes::WorkflowCanceled {
                details: details.clone(),
            },
        }
    }

    /// Whether a recorded event is the one an applied command records: same kind and identity.
    /// Inputs are not compared, as in Temporal, so fixing an argument is not a divergence.
    fn matches(&self, command: &Command, recorded: &EventAttributes) -> bool {
        use EventAttributes as E;
        match (command, recorded) {
            (
                Command::ScheduleActivity {
                    seq, activity_type, ..
                },
                E::ActivityScheduled {
                    seq: recorded_seq,
                    activity_type: recorded_type,
                    ..
                },
            ) => seq == recorded_seq && activity_type == recorded_type,
            (
                Command::RequestCancelActivity { seq },
                E::ActivityCancelRequested { scheduled_event_id },
            ) => {
                self.activities
                    .get(*seq)
                    .and_then(ActivityState::scheduled_event_id)
                    == Some(*scheduled_event_id)
            }
            (
                Command::StartTimer { seq, .. },
                E::TimerStarted {
                    seq: recorded_seq, ..
                },
            ) => seq == recorded_seq,
            (Command::CancelTimer { seq }, E::TimerCanceled { started_event_id }) => matches!(
                self.timers.get(*seq),
                Some(TimerState::CancelCommandCreated { started_event_id: id }) if id == *started_event_id
            ),
            (Command::CompleteWorkflow { .. }, E::WorkflowCompleted { .. })
            | (Command::FailWorkflow { .. }, E::WorkflowFailed { .. })
            | (Command::CancelWorkflow { .. }, E::WorkflowCanceled { .. }) => true,
            _ => false,
        }
    }

    /// A recorded command event: moves its machine to the recorded state.
    fn record_command_event(&mut self, index: usize) -> CoreResult<()> {
        let event = self.at(index);
        let event_id = event.event_id;
        match &event.attributes {
            EventAttributes::ActivityScheduled { seq, .. } => {
                let seq = *seq;
                self.advance_activity(event_id, seq, ActivityInput::ScheduleRecorded { event_id })?;
                self.open_activities.insert(event_id, seq);
            }
            EventAttributes::ActivityCancelRequested { scheduled_event_id } => {
                let seq = self.activity_seq(event_id, *scheduled_event_id)?;
                self.advance_activity(event_id, seq, ActivityInput::CancelRecorded)?;
            }
            EventAttributes::TimerStarted { seq, .. } => {
                let seq = *seq;
                self.advance_timer(event_id, seq, TimerInput::StartRecorded { event_id })?;
                self.open_timers.insert(event_id, seq);
            }
            EventAttributes::TimerCanceled { started_event_id } => {
                let started_event_id = *started_event_id;
                let seq = self.timer_seq(event_id, started_event_id)?;
                self.advance_timer(event_id, seq, TimerInput::CancelRecorded)?;
                self.open_timers.remove(&started_event_id);
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

    /// Completes the outstanding activation with workflow code's commands. Returns the events
    /// to commit for a live activation (boundary first) and nothing for a replayed one.
    pub fn complete(&mut self, mut commands: Vec<Command>) -> CoreResult<Vec<EventAttributes>> {
        // Workflow code stops at its first terminal command; anything after it is dropped.
        if let Some(terminal) = commands.iter().position(Command::is_terminal) {
            commands.truncate(terminal + 1);
        }
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Replaying { boundary_index } => {
                self.complete_replay(boundary_index, &commands)?;
                Ok(Vec::new())
            }
            Phase::Live { seen_event_id, .. } => {
                let mut events = Vec::with_capacity(commands.len() + 1);
                events.push(EventAttributes::WorkflowTaskCompleted {
                    seen_event_id,
                    flags: ENGINE_FLAGS,
                    dropped_signals: std::mem::take(&mut self.dropped_signals),
                });
                let mut recorded = Vec::with_capacity(commands.len());
                for command in commands {
                    if self.apply_command(&command)? {
                        events.push(self.event_for(&command));
                        recorded.push(command);
                    }
                }
                if recorded.last().is_some_and(Command::is_terminal) {
                    self.closed = true;
                }
                // The inbound events this activation delivered are behind it (its boundary
                // comes after them): they need not wait for the commit to be dropped.
                self.scan_index = self.scan_index.max(seen_event_id as usize);
                self.last_seen = seen_event_id;
                self.drop_replayed();
                self.phase = Phase::AwaitingCommit {
                    seen_event_id,
                    recorded,
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

    /// Counts a signal the outstanding live activation dropped because its payload did not
    /// decode; the task's boundary records the count (`describe()` adds them up).
    pub fn note_dropped_signal(&mut self) {
        if matches!(self.phase, Phase::Live { .. }) {
            self.dropped_signals = self.dropped_signals.saturating_add(1);
        }
    }

    /// The events that fail the run now, whatever the state of replay: a boundary that has
    /// seen every event, then `WorkflowFailed`. For a replay that diverged when the workflow
    /// lists `NonDeterminismError` among the exceptions that fail its run (as temporalio
    /// allows). The run is closed: it takes no further activation.
    pub fn fail_run(&mut self, failure: crate::history::Failure) -> Vec<EventAttributes> {
        self.phase = Phase::Idle;
        self.closed = true;
        vec![
            EventAttributes::WorkflowTaskCompleted {
                seen_event_id: self.history_length(),
                flags: ENGINE_FLAGS,
                dropped_signals: std::mem::take(&mut self.dropped_signals),
            },
            EventAttributes::WorkflowFailed {
                failure: Box::new(failure),
            },
        ]
    }

    fn complete_replay(&mut self, boundary_index: usize, commands: &[Command]) -> CoreResult<()> {
        let EventAttributes::WorkflowTaskCompleted { seen_event_id, .. } =
            self.at(boundary_index).attributes
        else {
            unreachable!("Replaying always points at a task boundary")
        };
        let end = boundary_index + 1 + self.recorded_command_count(boundary_index);
        let mut next = boundary_index + 1;
        for command in commands {
            if !self.apply_command(command)? {
                continue;
            }
            if next >= end {
                let event_id = self.at(boundary_index).event_id;
                return Err(non_determinism(
                    event_id,
                    "no further command for this workflow task".into(),
                    command.describe(),
                ));
            }
            let recorded = self.at(next);
            if !self.matches(command, &recorded.attributes) {
                return Err(non_determinism(
                    recorded.event_id,
                    describe_recorded(&recorded.attributes),
                    command.describe(),
                ));
            }
            self.record_command_event(next)?;
            next += 1;
        }
        if next < end {
            let recorded = self.at(next);
            return Err(non_determinism(
                recorded.event_id,
                describe_recorded(&recorded.attributes),
                "no command".into(),
            ));
        }
        self.scan_index = next;
        self.last_seen = seen_event_id;
        self.drop_replayed();
        Ok(())
    }

    /// The events of our own live completion came back from storage: check and learn their ids.
    fn acknowledge_commit(&mut self, seen_event_id: u64, recorded: Vec<Command>) -> CoreResult<()> {
        let missing = || CoreError::InvalidHistory {
            event_id: seen_event_id,
            reason: "the workflow task this worker completed is not in the fetched history".into(),
        };
        let boundary_index = self.find_boundary(self.scan_index).ok_or_else(missing)?;
        match self.at(boundary_index).attributes {
            EventAttributes::WorkflowTaskCompleted {
                seen_event_id: recorded_seen,
                ..
            } if recorded_seen == seen_event_id => {}
            _ => return Err(missing()),
        }
        for (offset, command) in recorded.iter().enumerate() {
            let index = boundary_index + 1 + offset;
            let matches = self
                .events
                .get(index - self.dropped)
                .is_some_and(|event| self.matches(command, &event.attributes));
            if !matches {
                return Err(missing());
            }
            self.record_command_event(index)?;
        }
        self.scan_index = boundary_index + 1 + recorded.len();
        self.last_seen = seen_event_id;
        self.drop_replayed();
        Ok(())
    }
}
