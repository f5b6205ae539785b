//! History invariants checked on load. Linear in the number of events, and incremental: a
//! worker checks each tail it fetches against what it has already checked.

use super::event::{Event, EventAttributes};
use super::flags::unknown_bits;
use crate::error::{CoreError, CoreResult};

/// Open flags by event id (dense from 1, so a vector, not a set).
#[derive(Debug, Default)]
struct OpenSet(Vec<bool>);

impl OpenSet {
    fn insert(&mut self, id: u64) {
        let index = id as usize;
        if self.0.len() <= index {
            self.0.resize(index + 1, false);
        }
        self.0[index] = true;
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
/// an earlier event of the right kind that is still open; task boundaries never go backwards
/// and carry only engine flags this build knows; nothing after a terminal event.
pub fn validate_history(events: &[Event]) -> CoreResult<()> {
    let mut validator = HistoryValidator::default();
    validator.check(events)?;
    if events.is_empty() {
        return Err(invalid(
            0,
            "a history has at least its WorkflowStarted event",
        ));
    }
    Ok(())
}

/// The state the checks need between tails: what is open, the last boundary, the end.
#[derive(Debug, Default)]
pub struct HistoryValidator {
    checked: u64,
    // Indexed by event id: a scheduled activity or started timer that is still open.
    open_activities: OpenSet,
    open_timers: OpenSet,
    last_seen: u64,
    terminal_at: Option<u64>,
}

impl HistoryValidator {
    /// Checks `events`, which continue the ones checked before (from id 1 the first time).
    /// After an error the validator has taken in the events before the offending one only:
    /// the run it checks is unusable and is dropped, not continued.
    pub fn check(&mut self, events: &[Event]) -> CoreResult<()> {
        for event in events {
            self.check_one(event)?;
        }
        Ok(())
    }

    // One arm per event kind reads better than guards with side effects (`remove` in a guard).
    #[allow(clippy::collapsible_match)]
    fn check_one(&mut self, event: &Event) -> CoreResult<()> {
        let expected_id = self.checked + 1;
        let id = event.event_id;
        if id != expected_id {
            return Err(invalid(
                id,
                format!("expected event id {expected_id}: ids must be dense from 1"),
            ));
        }
        if let Some(terminal_id) = self.terminal_at {
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
                self.open_activities.insert(id);
            }
            TimerStarted { .. } => {
                self.open_timers.insert(id);
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
                if !self.open_activities.remove(scheduled_event_id) {
                    return Err(invalid(id, format!(
                        "{} refers to event {scheduled_event_id}, which is not an open ActivityScheduled",
                        event.attributes.kind()
                    )));
                }
            }
            ActivityCancelRequested { scheduled_event_id } => {
                if !self.open_activities.contains(scheduled_event_id) {
                    return Err(invalid(id, format!(
                        "ActivityCancelRequested refers to event {scheduled_event_id}, which is not an open ActivityScheduled"
                    )));
                }
            }
            TimerFired { started_event_id } | TimerCanceled { started_event_id } => {
                if !self.open_timers.remove(started_event_id) {
                    return Err(invalid(
                        id,
                        format!(
                        "{} refers to event {started_event_id}, which is not an open TimerStarted",
                        event.attributes.kind()
                    ),
                    ));
                }
            }
            WorkflowTaskCompleted {
                seen_event_id,
                flags,
                ..
            } => {
                if *seen_event_id >= id || *seen_event_id < self.last_seen {
                    return Err(invalid(
                        id,
                        format!(
                            "task boundary saw event {seen_event_id}, outside {}..{id}",
                            self.last_seen
                        ),
                    ));
                }
                if let Some(unknown) = unknown_bits(*flags) {
                    return Err(CoreError::UnsupportedHistory(format!(
                        "the workflow task closed by event {id} ran with engine flags \
                         {unknown:#x}, which this build does not know (recorded by a newer \
                         engine)"
                    )));
                }
                self.last_seen = *seen_event_id;
            }
            _ => {}
        }
        if event.attributes.is_terminal() {
            self.terminal_at = Some(id);
        }
        self.checked = id;
        Ok(())
    }
}
