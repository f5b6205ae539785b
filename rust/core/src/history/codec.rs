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

/// Encodes one event on its own, without the header: the unit a database stores per row.
/// Concatenated rows, behind [`join_event_rows`]'s header, decode as a history.
pub fn encode_event_row(event: &Event) -> Vec<u8> {
    postcard::to_stdvec(event).expect("postcard encoding into a Vec cannot fail")
}

/// Joins rows made by [`encode_event_row`] into encoded events (header, count, rows): postcard
/// writes a sequence as its varint length followed by the items.
pub fn join_event_rows<R: AsRef<[u8]>>(rows: &[R]) -> Vec<u8> {
    let total: usize = rows.iter().map(|row| row.as_ref().len()).sum();
    let mut out = Vec::with_capacity(16 + total);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    let mut count = rows.len() as u64;
    loop {
        let byte = (count & 0x7f) as u8;
        count >>= 7;
        if count == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    for row in rows {
        out.extend_from_slice(row.as_ref());
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventAttributes, Payload};

    #[test]
    fn joined_rows_decode_like_encoded_events() {
        for count in [0usize, 1, 127, 128, 300] {
            let events: Vec<Event> = (1..=count as u64)
                .map(|event_id| Event {
                    event_id,
                    timestamp_ms: -5,
                    attributes: EventAttributes::WorkflowSignaled {
                        signal_name: "s".into(),
                        input: Payload(vec![1, 2]),
                    },
                })
                .collect();
            let rows: Vec<Vec<u8>> = events.iter().map(encode_event_row).collect();
            assert_eq!(join_event_rows(&rows), encode_events(&events));
        }
    }
}
