//! Lossless JSON export and import of a history.
//!
//! Shape: `{"format_version": 1, "events": [{"event_id": 1, "timestamp_ms": ..., "type":
//! "WorkflowStarted", "attributes": {...}}, ...]}`. Payload bytes are standard base64.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::event::{Event, EventAttributes};
use super::validate::validate_history;
use crate::error::{CoreError, CoreResult};

/// The JSON shape's own version. JSON names its fields, so it evolves without one: a field
/// added later is optional (`serde(default)`) and readers before it ignore it. Bumped only if
/// the shape itself changes.
pub const JSON_FORMAT_VERSION: u8 = 1;

/// Every event kind this build knows, to tell a newer engine's kind from a corrupt one.
const KNOWN_KINDS: [&str; 17] = [
    "WorkflowStarted",
    "WorkflowTaskCompleted",
    "ActivityScheduled",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityTimedOut",
    "ActivityCancelRequested",
    "ActivityCanceled",
    "TimerStarted",
    "TimerFired",
    "TimerCanceled",
    "WorkflowSignaled",
    "WorkflowCancelRequested",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowCanceled",
    "WorkflowTerminated",
];

#[derive(Serialize, Deserialize)]
struct JsonEvent {
    event_id: u64,
    timestamp_ms: i64,
    #[serde(rename = "type")]
    kind: String,
    attributes: Value,
}

#[derive(Serialize, Deserialize)]
struct JsonHistory {
    format_version: u8,
    events: Vec<JsonEvent>,
}

pub fn history_to_json(events: &[Event]) -> String {
    let events = events
        .iter()
        .map(|event| {
            // An externally tagged enum serialises as {"Kind": {fields}}: lift the tag out.
            let tagged = serde_json::to_value(&event.attributes).expect("events serialise");
            let (kind, attributes) = match tagged {
                Value::Object(map) => map.into_iter().next().expect("one tag"),
                other => (other.to_string(), Value::Null),
            };
            JsonEvent {
                event_id: event.event_id,
                timestamp_ms: event.timestamp_ms,
                kind,
                attributes,
            }
        })
        .collect();
    let history = JsonHistory {
        format_version: JSON_FORMAT_VERSION,
        events,
    };
    serde_json::to_string_pretty(&history).expect("history serialises")
}

pub fn history_from_json(text: &str) -> CoreResult<Vec<Event>> {
    let history: JsonHistory = serde_json::from_str(text)
        .map_err(|error| CoreError::CorruptHistory(format!("not a history JSON: {error}")))?;
    if history.format_version > JSON_FORMAT_VERSION {
        return Err(CoreError::UnsupportedHistory(format!(
            "history JSON format version {} was written by a newer engine (this build reads \
             {JSON_FORMAT_VERSION})",
            history.format_version
        )));
    }
    if history.format_version == 0 {
        return Err(CoreError::CorruptHistory(
            "history JSON format version 0 does not exist".into(),
        ));
    }
    let mut events = Vec::with_capacity(history.events.len());
    for json_event in history.events {
        if !KNOWN_KINDS.contains(&json_event.kind.as_str()) {
            return Err(CoreError::UnsupportedHistory(format!(
                "event {} is a {}, a kind this build does not know (the history was written by \
                 a newer engine)",
                json_event.event_id, json_event.kind
            )));
        }
        let mut tagged = Map::new();
        tagged.insert(json_event.kind, json_event.attributes);
        let attributes: EventAttributes =
            serde_json::from_value(Value::Object(tagged)).map_err(|error| {
                CoreError::CorruptHistory(format!("event {}: {error}", json_event.event_id))
            })?;
        events.push(Event {
            event_id: json_event.event_id,
            timestamp_ms: json_event.timestamp_ms,
            attributes,
        });
    }
    validate_history(&events)?;
    Ok(events)
}
