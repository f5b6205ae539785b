//! The history store: typed events, their binary and JSON encodings, and validation on load.

mod codec;
mod event;
mod json;
mod payload;
mod validate;

pub use codec::{
    decode_events, decode_history, encode_event_row, encode_events, encode_history,
    join_event_rows, FORMAT_VERSION,
};
pub use event::{
    ActivityOptions, Event, EventAttributes, EventRole, RetryPolicy, TimeoutType,
    WorkflowStartedAttributes,
};
pub use json::{history_from_json, history_to_json};
pub use payload::{Failure, Payload};
pub use validate::validate_history;
