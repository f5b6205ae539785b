//! A workflow task's outcome as a store records it: checked, numbered from where the history
//! ends, and stamped with the time its code saw.

use super::effects::{effect_of, Effect};
use super::run::RunStatus;
use crate::error::{CoreError, CoreResult};
use crate::history::{decode_events, Event, EventAttributes, EventRole};

/// The events of one workflow task's outcome (from `WorkflowRun::complete`): its boundary,
/// then one event per command. Ids are assigned when it is recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedOutcome {
    /// The last event the task had seen (its boundary's `seen_event_id`).
    pub seen_event_id: u64,
    /// Signals the task dropped (undecodable payloads), from its boundary.
    pub dropped_signals: u32,
    pub events: Vec<Event>,
}

impl DecodedOutcome {
    /// Decodes an encoded outcome. Refuses one that does not start with its boundary or holds
    /// anything but command events after it.
    pub fn decode(outcome: &[u8]) -> CoreResult<Self> {
        Self::checked(decode_events(outcome)?)
    }

    /// An outcome from its events' attributes, all stamped `timestamp_ms` (the task's time).
    pub fn from_attributes(
        attributes: Vec<EventAttributes>,
        timestamp_ms: i64,
    ) -> CoreResult<Self> {
        Self::checked(
            attributes
                .into_iter()
                .map(|attributes| Event {
                    event_id: 0,
                    timestamp_ms,
                    attributes,
                })
                .collect(),
        )
    }

    fn checked(events: Vec<Event>) -> CoreResult<Self> {
        let (seen_event_id, dropped_signals) = match events.first().map(|event| &event.attributes) {
            Some(EventAttributes::WorkflowTaskCompleted {
                seen_event_id,
                dropped_signals,
                ..
            }) => (*seen_event_id, *dropped_signals),
            Some(other) => {
                return Err(CoreError::InvalidCommand(format!(
                    "a workflow task outcome starts with its boundary, not {}",
                    other.kind()
                )))
            }
            None => {
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
        Ok(DecodedOutcome {
            seen_event_id,
            dropped_signals,
            events,
        })
    }

    /// Numbers the events from `first_event_id` and stamps those without a time (0: not
    /// recorded) with `now_ms`. The time the task's code saw is what replay gives it again.
    pub fn number(&mut self, first_event_id: u64, now_ms: i64) {
        for (offset, event) in self.events.iter_mut().enumerate() {
            event.event_id = first_event_id + offset as u64;
            if event.timestamp_ms == 0 {
                event.timestamp_ms = now_ms;
            }
        }
    }

    /// The status the outcome closes its run with, if it does.
    pub fn closes(&self) -> Option<RunStatus> {
        self.events
            .iter()
            .find_map(|event| match effect_of(&event.attributes) {
                Some(Effect::Close(status)) => Some(status),
                _ => None,
            })
    }
}
