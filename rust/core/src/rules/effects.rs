//! What committing a workflow task's command event sets in motion (read by
//! [`super::operations::complete_workflow_task`] for every store).

use super::run::RunStatus;
use crate::history::{ActivityOptions, EventAttributes, Payload};

#[derive(Clone, Debug, PartialEq)]
pub enum Effect<'a> {
    /// Queue the first attempt of an activity.
    ScheduleActivity {
        seq: u32,
        activity_type: &'a str,
        input: &'a Payload,
        options: &'a ActivityOptions,
    },
    /// Fire a timer this long after the commit.
    StartTimer { duration_ms: u64 },
    /// Forget a pending timer.
    CancelTimer { started_event_id: u64 },
    /// Cancel an activity (try-cancel: resolve it as canceled at once).
    CancelActivity { scheduled_event_id: u64 },
    /// Close the run.
    Close(RunStatus),
}

/// The effect of one committed event of a workflow task outcome, if it has one.
pub fn effect_of(attributes: &EventAttributes) -> Option<Effect<'_>> {
    Some(match attributes {
        EventAttributes::ActivityScheduled {
            seq,
            activity_type,
            input,
            options,
        } => Effect::ScheduleActivity {
            seq: *seq,
            activity_type,
            input,
            options,
        },
        EventAttributes::TimerStarted { duration_ms, .. } => Effect::StartTimer {
            duration_ms: *duration_ms,
        },
        EventAttributes::TimerCanceled { started_event_id } => Effect::CancelTimer {
            started_event_id: *started_event_id,
        },
        EventAttributes::ActivityCancelRequested { scheduled_event_id } => Effect::CancelActivity {
            scheduled_event_id: *scheduled_event_id,
        },
        EventAttributes::WorkflowCompleted { .. } => Effect::Close(RunStatus::Completed),
        EventAttributes::WorkflowFailed { .. } => Effect::Close(RunStatus::Failed),
        EventAttributes::WorkflowCanceled { .. } => Effect::Close(RunStatus::Canceled),
        _ => return None,
    })
}
