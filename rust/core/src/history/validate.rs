//! History invariants checked on load. Linear in the number of events.

use super::event::{Event, EventAttributes};
use crate::error::{CoreError, CoreResult};

/// Open flags by event id (dense from 1, so a vector, not a set).
struct OpenSet(Vec<bool>);

impl OpenSet {
    fn new(events: usize) -> Self {
        OpenSet(vec![false; events + 1])
    }
    fn insert(&mut self, id: u64) {
        if let Some(slot) = self.0.get_mut(id as usize) {
            *slot = true;
        }
    }
    fn contains(&self, id: &u64) -> bool {
        self.0.get(*id as usize).copied().unwrap_or(false)
    }
    /// Closes `id`; false if it was not open.
    fn remove(&mut self, id: &u64) -> bool {
        match self.0.get_mut(*id as usize) {
            Some(slot) if *slot => {
                *slot = false;
                true
            }
            _ => false,
        }
    }
}

fn invalid(event_id: u64, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidHistory {
        event_id,
        reason: reason.into(),
    }
}

/// Checks: ids dense from 1; WorkflowStarted first and only first; every completion refers to
/// an earlier event of the right kind that is still open; task boundaries never go backwards;
/// nothing after a terminal event.
// One arm per event kind reads better than guards with side effects (`remove` in a guard).
#[allow(clippy::collapsible_match)]
pub fn validate_history(events: &[Event]) -> CoreResult<()> {
    // Indexed by event id: a scheduled activity or started timer that is still open.
    let mut open_activities = OpenSet::new(events.len());
    let mut open_timers = OpenSet::new(events.len());
    let mut last_seen = 0u64;
    let mut terminal_at: Option<u64> = None;
    for (index, event) in events.iter().enumerate() {
        let expected_id = index as u64 + 1;
        let id = event.event_id;
        if id != expected_id {
            return Err(invalid(
                id,
                format!("expected event id {expected_id}: ids must be dense from 1"),
            ));
        }
        if let Some(terminal_id) = terminal_at {
            return Err(invalid(
                id,
                format!("event after the terminal event {terminal_id}"),
            ));
        }
        let is_start = matches!(event.attributes, EventAttributes::WorkflowStarted(_));
        if (id == 1) != is_start {
            return Err(invalid(
                id,
                "WorkflowStarted must be the first event and only the first",
            ));
        }
        use EventAttributes::*;
        match &event.attributes {
            ActivityScheduled { .. } => {
                open_activities.insert(id);
            }
            TimerStarted { .. } => {
                open_timers.insert(id);
            }
            ActivityCompleted {
                scheduled_event_id, ..
            }
            | ActivityFailed {
                scheduled_event_id, ..
            }
            | ActivityTimedOut {
                scheduled_event_id, ..
            }
            | ActivityCanceled {
                scheduled_event_id, ..
            } => {
                if !open_activities.remove(scheduled_event_id) {
                    return Err(invalid(id, format!(
                        "{} refers to event {scheduled_event_id}, which is not an open ActivityScheduled",
                        event.attributes.kind()
                    )));
                }
            }
            ActivityCancelRequested { scheduled_event_id } => {
                if !open_activities.contains(scheduled_event_id) {
                    return Err(invalid(id, format!(
                        "ActivityCancelRequested refers to event {scheduled_event_id}, which is not an open ActivityScheduled"
                    )));
                }
            }
            TimerFired { started_event_id } | TimerCanceled { started_event_id } => {
                if !open_timers.remove(started_event_id) {
                    return Err(invalid(
                        id,
                        format!(
                        "{} refers to event {started_event_id}, which is not an open TimerStarted",
                        event.attributes.kind()
                    ),
                    ));
                }
            }
            WorkflowTaskCompleted { seen_event_id, .. } => {
                if *seen_event_id >= id || *seen_event_id < last_seen {
                    return Err(invalid(
                        id,
                        format!(
                            "task boundary saw event {seen_event_id}, outside {last_seen}..{id}"
                        ),
                    ));
                }
                last_seen = *seen_event_id;
            }
            _ => {}
        }
        if event.attributes.is_terminal() {
            terminal_at = Some(id);
        }
    }
    if events.is_empty() {
        return Err(invalid(
            0,
            "a history has at least its WorkflowStarted event",
        ));
    }
    Ok(())
}
