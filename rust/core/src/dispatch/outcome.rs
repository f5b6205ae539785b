//! A workflow task's outcome as a store records it: checked, numbered from where the history
//! ends, and stamped with the time its code saw.

use crate::error::{CoreError, CoreResult};
use crate::history::{decode_events, Event, EventAttributes, EventRole};

/// Decodes an outcome (from `WorkflowRun::complete`), numbers its events from
/// `first_event_id` and stamps those without a time with `now_ms`. Returns the event the task
/// saw last and the numbered events. Refuses an outcome that does not start with its boundary
/// or holds anything but command events after it.
pub fn number_outcome(
    outcome: &[u8],
    first_event_id: u64,
    now_ms: i64,
) -> CoreResult<(u64, Vec<Event>)> {
    let mut events = decode_events(outcome)?;
    let seen_event_id = match events.first().map(|event| &event.attributes) {
        Some(EventAttributes::WorkflowTaskCompleted { seen_event_id, .. }) => *seen_event_id,
        _ => {
            return Err(CoreError::InvalidCommand(
                "a workflow task outcome starts with its boundary".into(),
            ))
        }
    };
    if events[1..]
        .iter()
        .any(|event| event.attributes.role() != EventRole::Command)
    {
        return Err(CoreError::InvalidCommand(
            "a workflow task outcome holds its boundary and command events only".into(),
        ));
    }
    for (offset, event) in events.iter_mut().enumerate() {
        event.event_id = first_event_id + offset as u64;
        // The time the task's code saw, which replay gives it again (0: not recorded).
        if event.timestamp_ms == 0 {
            event.timestamp_ms = now_ms;
        }
    }
    Ok((seen_event_id, events))
}
