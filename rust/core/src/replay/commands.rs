//! What workflow code asks for in one activation.

use crate::history::{ActivityOptions, EventAttributes, Failure, Payload};

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    ScheduleActivity {
        seq: u32,
        activity_type: String,
        input: Payload,
        options: Box<ActivityOptions>,
    },
    RequestCancelActivity {
        seq: u32,
    },
    StartTimer {
        seq: u32,
        duration_ms: u64,
    },
    CancelTimer {
        seq: u32,
    },
    CompleteWorkflow {
        result: Payload,
    },
    FailWorkflow {
        failure: Box<Failure>,
    },
    CancelWorkflow {
        details: Payload,
    },
}

impl Command {
    /// A short identity used in non-determinism messages, e.g. `ScheduleActivity(seq=2, charge)`.
    pub fn describe(&self) -> String {
        match self {
            Command::ScheduleActivity {
                seq, activity_type, ..
            } => format!("ScheduleActivity(seq={seq}, type={activity_type})"),
            Command::RequestCancelActivity { seq } => format!("RequestCancelActivity(seq={seq})"),
            Command::StartTimer { seq, duration_ms } => {
                format!("StartTimer(seq={seq}, duration_ms={duration_ms})")
            }
            Command::CancelTimer { seq } => format!("CancelTimer(seq={seq})"),
            Command::CompleteWorkflow { .. } => "CompleteWorkflow".into(),
            Command::FailWorkflow { .. } => "FailWorkflow".into(),
            Command::CancelWorkflow { .. } => "CancelWorkflow".into(),
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Command::CompleteWorkflow { .. }
                | Command::FailWorkflow { .. }
                | Command::CancelWorkflow { .. }
        )
    }
}

/// Describes a recorded command event the same way [`Command::describe`] describes commands, so
/// both sides of a non-determinism message read alike.
pub fn describe_recorded(attributes: &EventAttributes) -> String {
    match attributes {
        EventAttributes::ActivityScheduled {
            seq, activity_type, ..
        } => format!("ScheduleActivity(seq={seq}, type={activity_type})"),
        EventAttributes::ActivityCancelRequested { scheduled_event_id } => {
            format!("RequestCancelActivity(scheduled_event_id={scheduled_event_id})")
        }
        EventAttributes::TimerStarted { seq, duration_ms } => {
            format!("StartTimer(seq={seq}, duration_ms={duration_ms})")
        }
        EventAttributes::TimerCanceled { started_event_id } => {
            format!("CancelTimer(started_event_id={started_event_id})")
        }
        EventAttributes::WorkflowCompleted { .. } => "CompleteWorkflow".into(),
        EventAttributes::WorkflowFailed { .. } => "FailWorkflow".into(),
        EventAttributes::WorkflowCanceled { .. } => "CancelWorkflow".into(),
        other => other.kind().into(),
    }
}
