//! Typed history events: what the engine works with. Their encodings are elsewhere and evolve
//! by their own rules: the binary one is the protobuf schema in `proto/` (see `wire/` and
//! `docs/history-format.md`), the JSON one names its fields. A new field here needs a field in
//! the schema (a new number), a default for rows written before it, and a place in
//! `wire/mod.rs`; format-1 rows are read by the frozen types of `legacy_v1.rs`.

use serde::{Deserialize, Serialize};

use super::payload::{Failure, Payload};

/// One fact in a run's history. `event_id` is dense from 1; `timestamp_ms` is Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: u64,
    pub timestamp_ms: i64,
    pub attributes: EventAttributes,
}

/// How to retry an activity. `maximum_attempts == 0` means unlimited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub initial_interval_ms: u64,
    pub backoff_coefficient: f64,
    pub maximum_interval_ms: Option<u64>,
    pub maximum_attempts: u32,
    pub non_retryable_error_types: Vec<String>,
}

impl Default for RetryPolicy {
    /// Temporal's defaults: 1 s, doubling, capped at 100 × initial, unlimited attempts.
    fn default() -> Self {
        RetryPolicy {
            initial_interval_ms: 1_000,
            backoff_coefficient: 2.0,
            maximum_interval_ms: None,
            maximum_attempts: 0,
            non_retryable_error_types: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivityOptions {
    pub task_queue: String,
    pub schedule_to_close_ms: Option<u64>,
    pub schedule_to_start_ms: Option<u64>,
    pub start_to_close_ms: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub retry_policy: RetryPolicy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeoutType {
    ScheduleToStart,
    StartToClose,
    ScheduleToClose,
    Heartbeat,
}

impl TimeoutType {
    pub fn name(self) -> &'static str {
        match self {
            TimeoutType::ScheduleToStart => "schedule_to_start",
            TimeoutType::StartToClose => "start_to_close",
            TimeoutType::ScheduleToClose => "schedule_to_close",
            TimeoutType::Heartbeat => "heartbeat",
        }
    }
}

/// Where an event comes from, which decides how replay treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventRole {
    /// Something that happened to the run (start, activity result, timer, signal): delivered to
    /// workflow code as a job of an activation.
    Inbound,
    /// Something workflow code asked for: matched against the command it issues on replay.
    Command,
    /// The boundary of a workflow task.
    TaskBoundary,
    /// Ends the run from outside (terminate): no job, no command.
    External,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// The attributes of `WorkflowStarted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStartedAttributes {
    pub workflow_type: String,
    pub workflow_id: String,
    pub run_id: String,
    pub task_queue: String,
    pub input: Payload,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventAttributes {
    /// Boxed: the largest attributes, and one per history (encodings are the same as for an
    /// inline struct variant).
    WorkflowStarted(Box<WorkflowStartedAttributes>),
    /// Closes one workflow task. `seen_event_id` is the last event that task had seen: events
    /// after it (a signal that arrived mid-task) belong to the next activation, on replay too.
    /// `flags` versions engine behaviour so old histories keep replaying. `dropped_signals`
    /// counts the signals the task dropped because their payload did not decode (absent in
    /// histories before it: 0).
    WorkflowTaskCompleted {
        seen_event_id: u64,
        flags: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped_signals: u32,
    },
    ActivityScheduled {
        seq: u32,
        activity_type: String,
        input: Payload,
        // Boxed (here and on failures) to keep every event small: histories are long vectors
        // of them. Boxing changes neither encoding.
        options: Box<ActivityOptions>,
    },
    ActivityCompleted {
        scheduled_event_id: u64,
        result: Payload,
        attempt: u32,
    },
    ActivityFailed {
        scheduled_event_id: u64,
        failure: Box<Failure>,
        attempt: u32,
    },
    ActivityTimedOut {
        scheduled_event_id: u64,
        timeout_type: TimeoutType,
        last_failure: Option<Box<Failure>>,
        attempt: u32,
    },
    ActivityCancelRequested {
        scheduled_event_id: u64,
    },
    ActivityCanceled {
        scheduled_event_id: u64,
        attempt: u32,
    },
    TimerStarted {
        seq: u32,
        duration_ms: u64,
    },
    TimerFired {
        started_event_id: u64,
    },
    TimerCanceled {
        started_event_id: u64,
    },
    WorkflowSignaled {
        signal_name: String,
        input: Payload,
    },
    WorkflowCancelRequested {
        reason: String,
    },
    WorkflowCompleted {
        result: Payload,
    },
    WorkflowFailed {
        failure: Box<Failure>,
    },
    WorkflowCanceled {
        details: Payload,
    },
    WorkflowTerminated {
        reason: String,
    },
}

impl EventAttributes {
    pub fn kind(&self) -> &'static str {
        match self {
            EventAttributes::WorkflowStarted(_) => "WorkflowStarted",
            EventAttributes::WorkflowTaskCompleted { .. } => "WorkflowTaskCompleted",
            EventAttributes::ActivityScheduled { .. } => "ActivityScheduled",
            EventAttributes::ActivityCompleted { .. } => "ActivityCompleted",
            EventAttributes::ActivityFailed { .. } => "ActivityFailed",
            EventAttributes::ActivityTimedOut { .. } => "ActivityTimedOut",
            EventAttributes::ActivityCancelRequested { .. } => "ActivityCancelRequested",
            EventAttributes::ActivityCanceled { .. } => "ActivityCanceled",
            EventAttributes::TimerStarted { .. } => "TimerStarted",
            EventAttributes::TimerFired { .. } => "TimerFired",
            EventAttributes::TimerCanceled { .. } => "TimerCanceled",
            EventAttributes::WorkflowSignaled { .. } => "WorkflowSignaled",
            EventAttributes::WorkflowCancelRequested { .. } => "WorkflowCancelRequested",
            EventAttributes::WorkflowCompleted { .. } => "WorkflowCompleted",
            EventAttributes::WorkflowFailed { .. } => "WorkflowFailed",
            EventAttributes::WorkflowCanceled { .. } => "WorkflowCanceled",
            EventAttributes::WorkflowTerminated { .. } => "WorkflowTerminated",
        }
    }

    pub fn role(&self) -> EventRole {
        use EventAttributes::*;
        match self {
            WorkflowStarted(_)
            | ActivityCompleted { .. }
            | ActivityFailed { .. }
            | ActivityTimedOut { .. }
            | ActivityCanceled { .. }
            | TimerFired { .. }
            | WorkflowSignaled { .. }
            | WorkflowCancelRequested { .. } => EventRole::Inbound,
            ActivityScheduled { .. }
            | ActivityCancelRequested { .. }
            | TimerStarted { .. }
            | TimerCanceled { .. }
            | WorkflowCompleted { .. }
            | WorkflowFailed { .. }
            | WorkflowCanceled { .. } => EventRole::Command,
            WorkflowTaskCompleted { .. } => EventRole::TaskBoundary,
            WorkflowTerminated { .. } => EventRole::External,
        }
    }

    /// Roughly the heap bytes the attributes own (payloads, names, failures): what a worker's
    /// cache bound counts. Not exact; proportional to what a kept event costs.
    pub fn heap_bytes(&self) -> usize {
        use EventAttributes::*;
        match self {
            WorkflowStarted(started) => {
                std::mem::size_of::<WorkflowStartedAttributes>()
                    + started.workflow_type.len()
                    + started.workflow_id.len()
                    + started.run_id.len()
                    + started.task_queue.len()
                    + started.input.0.len()
            }
            ActivityScheduled {
                activity_type,
                input,
                options,
                ..
            } => {
                activity_type.len()
                    + input.0.len()
                    + std::mem::size_of::<ActivityOptions>()
                    + options.task_queue.len()
            }
            ActivityCompleted {
                result: payload, ..
            }
            | WorkflowCompleted { result: payload }
            | WorkflowCanceled { details: payload } => payload.0.len(),
            ActivityFailed { failure, .. } | WorkflowFailed { failure } => failure.heap_bytes(),
            ActivityTimedOut { last_failure, .. } => last_failure
                .as_ref()
                .map_or(0, |failure| failure.heap_bytes()),
            WorkflowSignaled { signal_name, input } => signal_name.len() + input.0.len(),
            WorkflowCancelRequested { reason } | WorkflowTerminated { reason } => reason.len(),
            WorkflowTaskCompleted { .. }
            | ActivityCancelRequested { .. }
            | ActivityCanceled { .. }
            | TimerStarted { .. }
            | TimerFired { .. }
            | TimerCanceled { .. } => 0,
        }
    }

    /// Events after which nothing may be appended.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventAttributes::WorkflowCompleted { .. }
                | EventAttributes::WorkflowFailed { .. }
                | EventAttributes::WorkflowCanceled { .. }
                | EventAttributes::WorkflowTerminated { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    /// Histories are long vectors of events: keep each small (large parts are boxed).
    #[test]
    fn events_stay_small() {
        assert!(std::mem::size_of::<super::Event>() <= 96);
    }
}
