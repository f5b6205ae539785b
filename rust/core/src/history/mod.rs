//! The history store: typed events, their binary and JSON encodings, and validation on load.

mod codec;
mod event;
pub mod flags;
mod json;
mod legacy_v1;
mod payload;
mod validate;
mod wire;

pub use codec::{
    decode_event_row, decode_events, decode_history, encode_event_row, encode_events,
    encode_events_owned, encode_history, join_event_rows, upgrade_event_row, FORMAT_VERSION,
    OLDEST_FORMAT_VERSION,
};
pub use event::{
    ActivityOptions, Event, EventAttributes, EventRole, RetryPolicy, TimeoutType,
    WorkflowStartedAttributes,
};
pub use json::{history_from_json, history_to_json};
pub use payload::{Failure, Payload};
pub use validate::{validate_history, HistoryValidator};
