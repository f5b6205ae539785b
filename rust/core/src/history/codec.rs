//! Versioned compact binary encoding of events.
//!
//! Layout: the magic bytes `MSH`, one format-version byte, then the events as a postcard
//! sequence (varint lengths and integers, variants by index). See `docs/history-format.md`.

use super::event::Event;
use super::validate::validate_history;
use crate::error::{CoreError, CoreResult};

const MAGIC: &[u8; 3] = b"MSH";
/// Bump when the encoding of an existing variant or field changes.
pub const FORMAT_VERSION: u8 = 1;

/// Encodes a run of events (a whole history, or a tail of one).
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + events.len() * 48);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    // Serialising plain structs and enums into a Vec cannot fail.
    postcard::to_io(events, &mut out).expect("postcard encoding into a Vec cannot fail");
    out
}

/// Decodes a run of events without checking history invariants.
pub fn decode_events(bytes: &[u8]) -> CoreResult<Vec<Event>> {
    if bytes.len() < 4 || &bytes[..3] != MAGIC {
        return Err(CoreError::CorruptHistory(
            "missing the MSH header: not a Mainspring history".into(),
        ));
    }
    let version = bytes[3];
    if version != FORMAT_VERSION {
        return Err(CoreError::CorruptHistory(format!(
            "history format version {version} is not supported (this build reads {FORMAT_VERSION})"
        )));
    }
    let (events, rest): (Vec<Event>, &[u8]) = postcard::take_from_bytes(&bytes[4..])
        .map_err(|error| CoreError::CorruptHistory(format!("undecodable events: {error}")))?;
    if !rest.is_empty() {
        return Err(CoreError::CorruptHistory(format!(
            "{} trailing bytes after the last event",
            rest.len()
        )));
    }
    Ok(events)
}

/// Encodes a whole history.
pub fn encode_history(events: &[Event]) -> Vec<u8> {
    encode_events(events)
}

/// Decodes a whole history and validates it.
pub fn decode_history(bytes: &[u8]) -> CoreResult<Vec<Event>> {
    let events = decode_events(bytes)?;
    validate_history(&events)?;
    Ok(events)
}
