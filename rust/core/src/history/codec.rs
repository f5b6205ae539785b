//! Versioned binary encoding of events.
//!
//! Layout: the magic bytes `MSH`, one format-version byte, then the body. Format 2 (written
//! now): the body is a Protocol Buffers `History` message (`proto/.../history.proto`). Format 1
//! (read only): a postcard sequence, see [`super::legacy_v1`]. See `docs/history-format.md`.

use prost::Message;

use super::event::Event;
use super::legacy_v1;
use super::validate::validate_history;
use super::wire::{
    event_from_wire, event_from_wire_in_place, event_into_wire, event_to_wire, WireEvent,
    WireHistory,
};
use crate::error::{CoreError, CoreResult};

const MAGIC: &[u8; 3] = b"MSH";
/// The format this build writes. Bumped only for a change the schema's own evolution rules
/// cannot carry (a new field or event kind is not one).
pub const FORMAT_VERSION: u8 = 2;
/// The oldest format this build still reads.
pub const OLDEST_FORMAT_VERSION: u8 = 1;
/// The protobuf key of `History.events` (field 1, length-delimited).
const EVENTS_KEY: u8 = (1 << 3) | 2;

/// Encodes a run of events (a whole history, or a tail of one).
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    encode_wire(events.iter().map(event_to_wire).collect())
}

/// Encodes events it may consume (a task's outcome, encoded once): nothing is copied.
pub fn encode_events_owned(events: Vec<Event>) -> Vec<u8> {
    encode_wire(events.into_iter().map(event_into_wire).collect())
}

fn encode_wire(events: Vec<WireEvent>) -> Vec<u8> {
    let history = WireHistory { events };
    let mut out = Vec::with_capacity(4 + history.encoded_len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    history
        .encode(&mut out)
        .expect("a Vec grows to fit: encoding cannot fail");
    out
}

/// Decodes a run of events without checking history invariants.
pub fn decode_events(bytes: &[u8]) -> CoreResult<Vec<Event>> {
    if bytes.len() < 4 || &bytes[..3] != MAGIC {
        return Err(CoreError::CorruptHistory(
            "missing the MSH header: not a Mainspring history".into(),
        ));
    }
    match bytes[3] {
        FORMAT_VERSION => decode_body(&bytes[4..]),
        1 => legacy_v1::decode_body(&bytes[4..]),
        version if version > FORMAT_VERSION => Err(CoreError::UnsupportedHistory(format!(
            "history format version {version} was written by a newer engine (this build reads \
             {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
        ))),
        version => Err(CoreError::CorruptHistory(format!(
            "history format version {version} does not exist"
        ))),
    }
}

/// Decodes a `History` message event by event: each `events` entry is decoded and converted
/// as it is reached, so no vector of wire messages is built first (a replay's whole history
/// goes through here). Fields of `History` this build does not know are skipped.
fn decode_body(mut body: &[u8]) -> CoreResult<Vec<Event>> {
    use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
    let corrupt = |error: prost::DecodeError| {
        CoreError::CorruptHistory(format!("undecodable events: {error}"))
    };
    // Rows are a few dozen bytes each: a guess that saves regrowing the vector, capped so a
    // history of large payloads does not reserve (and a cached run keep) far too much.
    let mut events = Vec::with_capacity((body.len() / 32).min(4096));
    let mut wire = WireEvent::default();
    while !body.is_empty() {
        let (tag, wire_type) = decode_key(&mut body).map_err(corrupt)?;
        if tag != 1 || wire_type != WireType::LengthDelimited {
            skip_field(wire_type, tag, &mut body, DecodeContext::default()).map_err(corrupt)?;
            continue;
        }
        let length = decode_varint(&mut body).map_err(corrupt)?;
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= body.len())
            .ok_or_else(|| CoreError::CorruptHistory("an event runs past the end".into()))?;
        let (row, rest) = body.split_at(length);
        body = rest;
        wire.clear();
        wire.merge(row).map_err(corrupt)?;
        events.push(event_from_wire_in_place(&mut wire)?);
    }
    Ok(events)
}

/// Encodes one event on its own, without the header: the unit a database stores per row (an
/// `Event` message). Concatenated rows, behind [`join_event_rows`]'s header, decode as a
/// history.
pub fn encode_event_row(event: &Event) -> Vec<u8> {
    event_to_wire(event).encode_to_vec()
}

/// Decodes one row made by [`encode_event_row`].
pub fn decode_event_row(row: &[u8]) -> CoreResult<Event> {
    let event = WireEvent::decode(row)
        .map_err(|error| CoreError::CorruptHistory(format!("undecodable event row: {error}")))?;
    event_from_wire(event)
}

/// Joins rows made by [`encode_event_row`] into encoded events: the header, then each row as
/// one `History.events` entry (its key, its length, its bytes) — no re-encoding.
pub fn join_event_rows<R: AsRef<[u8]>>(rows: &[R]) -> Vec<u8> {
    let total: usize = rows.iter().map(|row| row.as_ref().len() + 6).sum();
    let mut out = Vec::with_capacity(4 + total);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    for row in rows {
        let row = row.as_ref();
        out.push(EVENTS_KEY);
        prost::encoding::encode_varint(row.len() as u64, &mut out);
        out.extend_from_slice(row);
    }
    out
}

/// Re-encodes a stored format-1 row (postcard) as a format-2 row: for store migrations.
pub fn upgrade_event_row(row: &[u8]) -> CoreResult<Vec<u8>> {
    Ok(encode_event_row(&legacy_v1::decode_row(row)?))
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

    fn signals(count: u64) -> Vec<Event> {
        (1..=count)
            .map(|event_id| Event {
                event_id,
                timestamp_ms: -5,
                attributes: EventAttributes::WorkflowSignaled {
                    signal_name: "s".into(),
                    input: Payload(vec![1, 2]),
                },
            })
            .collect()
    }

    #[test]
    fn joined_rows_decode_like_encoded_events() {
        for count in [0u64, 1, 127, 128, 300] {
            let events = signals(count);
            let rows: Vec<Vec<u8>> = events.iter().map(encode_event_row).collect();
            assert_eq!(join_event_rows(&rows), encode_events(&events));
            assert_eq!(decode_events(&join_event_rows(&rows)).unwrap(), events);
        }
    }

    #[test]
    fn a_format_from_a_newer_engine_is_unsupported_not_corrupt() {
        let mut bytes = encode_events(&signals(1));
        bytes[3] = FORMAT_VERSION + 1;
        assert!(matches!(
            decode_events(&bytes),
            Err(CoreError::UnsupportedHistory(_))
        ));
        bytes[3] = 0;
        assert!(matches!(
            decode_events(&bytes),
            Err(CoreError::CorruptHistory(_))
        ));
    }

    #[test]
    fn an_event_kind_from_a_newer_engine_is_unsupported() {
        // Field 40 of Event: a kind this build has no number for.
        let mut row = WireEvent {
            event_id: 1,
            timestamp_ms: 0,
            attributes: None,
        }
        .encode_to_vec();
        row.extend_from_slice(&[(40 << 3 | 2) as u8, 0x01, 0x00]);
        let error = decode_event_row(&row).unwrap_err();
        assert!(
            matches!(error, CoreError::UnsupportedHistory(_)),
            "{error:?}"
        );
    }
}
