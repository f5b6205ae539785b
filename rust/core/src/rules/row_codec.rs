//! The two MessagePack columns of an activity row (see [`super::rows`]), as the SQLite store
//! has written them since its first release (from Python, with msgspec):
//! - `policy`: `[initial_interval_ms, backoff_coefficient, maximum_interval_ms | nil,
//!   maximum_attempts, [non_retryable_error_types...]]`;
//! - `last_failure`: `[message, error_type, non_retryable, details (bin), stack_trace,
//!   cause (the same array) | nil]`.
//!
//! Only these two shapes are read; anything else is a corrupt row.

use crate::error::{CoreError, CoreResult};
use crate::history::{Failure, Payload, RetryPolicy};

pub fn encode_policy(policy: &RetryPolicy) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    array_header(&mut out, 5);
    unsigned(&mut out, policy.initial_interval_ms);
    out.push(0xcb);
    out.extend_from_slice(&policy.backoff_coefficient.to_be_bytes());
    match policy.maximum_interval_ms {
        Some(maximum) => unsigned(&mut out, maximum),
        None => out.push(0xc0),
    }
    unsigned(&mut out, u64::from(policy.maximum_attempts));
    array_header(&mut out, policy.non_retryable_error_types.len());
    for name in &policy.non_retryable_error_types {
        string(&mut out, name);
    }
    out
}

pub fn decode_policy(bytes: &[u8]) -> CoreResult<RetryPolicy> {
    let mut reader = Reader { bytes, at: 0 };
    reader.expect_array(5)?;
    let policy = RetryPolicy {
        initial_interval_ms: reader.unsigned()?,
        backoff_coefficient: reader.float()?,
        maximum_interval_ms: if reader.nil()? {
            None
        } else {
            Some(reader.unsigned()?)
        },
        maximum_attempts: u32::try_from(reader.unsigned()?)
            .map_err(|_| corrupt("maximum_attempts out of range"))?,
        non_retryable_error_types: {
            let count = reader.array()?;
            (0..count)
                .map(|_| reader.string())
                .collect::<CoreResult<Vec<_>>>()?
        },
    };
    reader.finish()?;
    Ok(policy)
}

pub fn encode_failure(failure: &Failure) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_failure(&mut out, failure);
    out
}

fn write_failure(out: &mut Vec<u8>, failure: &Failure) {
    // Six elements as the first release wrote them; a seventh (the next retry delay) only when
    // set, so rows stay readable by the releases before it whenever they can be.
    array_header(out, 6 + usize::from(failure.next_retry_delay_ms.is_some()));
    string(out, &failure.message);
    string(out, &failure.error_type);
    out.push(if failure.non_retryable { 0xc3 } else { 0xc2 });
    binary(out, &failure.details.0);
    string(out, &failure.stack_trace);
    match &failure.cause {
        Some(cause) => write_failure(out, cause),
        None => out.push(0xc0),
    }
    if let Some(delay) = failure.next_retry_delay_ms {
        unsigned(out, delay);
    }
}

pub fn decode_failure(bytes: &[u8]) -> CoreResult<Failure> {
    let mut reader = Reader { bytes, at: 0 };
    let failure = read_failure(&mut reader, 0)?;
    reader.finish()?;
    Ok(failure)
}

fn read_failure(reader: &mut Reader<'_>, depth: usize) -> CoreResult<Failure> {
    if depth > 64 {
        return Err(corrupt("failure causes nest too deep"));
    }
    let length = reader.array()?;
    if !(6..=7).contains(&length) {
        return Err(corrupt("a failure of the wrong length"));
    }
    Ok(Failure {
        message: reader.string()?,
        error_type: reader.string()?,
        non_retryable: reader.boolean()?,
        details: Payload(reader.bytes_or_string()?),
        stack_trace: reader.string()?,
        cause: if reader.nil()? {
            None
        } else {
            Some(Box::new(read_failure(reader, depth + 1)?))
        },
        next_retry_delay_ms: if length == 7 {
            Some(reader.unsigned()?)
        } else {
            None
        },
    })
}

fn corrupt(what: &str) -> CoreError {
    CoreError::CorruptRecord(format!("an activity row's MessagePack: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> CoreResult<u8> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| corrupt("truncated MessagePack"))?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, count: usize) -> CoreResult<&[u8]> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt("truncated MessagePack"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn big_endian(&mut self, count: usize) -> CoreResult<u64> {
        Ok(self
            .take(count)?
            .iter()
            .fold(0u64, |value, byte| (value << 8) | u64::from(*byte)))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn nil(&mut self) -> CoreResult<bool> {
        if self.peek() == Some(0xc0) {
            self.at += 1;
            return Ok(true);
        }
        Ok(false)
    }

    fn boolean(&mut self) -> CoreResult<bool> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(corrupt("expected a boolean")),
        }
    }

    fn unsigned(&mut self) -> CoreResult<u64> {
        match self.byte()? {
            small @ 0x00..=0x7f => Ok(u64::from(small)),
            0xcc => self.big_endian(1),
            0xcd => self.big_endian(2),
            0xce => self.big_endian(4),
            0xcf => self.big_endian(8),
            _ => Err(corrupt("expected an unsigned integer")),
        }
    }

    fn float(&mut self) -> CoreResult<f64> {
        match self.peek() {
            Some(0xcb) => {
                self.at += 1;
                Ok(f64::from_bits(self.big_endian(8)?))
            }
            Some(0xca) => {
                self.at += 1;
                Ok(f64::from(f32::from_bits(self.big_endian(4)? as u32)))
            }
            // msgspec writes a whole float as an integer only if asked; accept one anyway.
            _ => Ok(self.unsigned()? as f64),
        }
    }

    fn array(&mut self) -> CoreResult<usize> {
        match self.byte()? {
            short @ 0x90..=0x9f => Ok(usize::from(short & 0x0f)),
            0xdc => Ok(self.big_endian(2)? as usize),
            0xdd => Ok(self.big_endian(4)? as usize),
            _ => Err(corrupt("expected an array")),
        }
    }

    fn expect_array(&mut self, length: usize) -> CoreResult<()> {
        if self.array()? != length {
            return Err(corrupt("an array of the wrong length"));
        }
        Ok(())
    }

    fn string(&mut self) -> CoreResult<String> {
        let length = match self.byte()? {
            short @ 0xa0..=0xbf => usize::from(short & 0x1f),
            0xd9 => self.big_endian(1)? as usize,
            0xda => self.big_endian(2)? as usize,
            0xdb => self.big_endian(4)? as usize,
            _ => return Err(corrupt("expected a string")),
        };
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| corrupt("a string not in UTF-8"))
    }

    /// Payload bytes: MessagePack `bin` (also a string, as older writers may have used).
    fn bytes_or_string(&mut self) -> CoreResult<Vec<u8>> {
        let length = match self.peek() {
            Some(0xc4) => {
                self.at += 1;
                self.big_endian(1)? as usize
            }
            Some(0xc5) => {
                self.at += 1;
                self.big_endian(2)? as usize
            }
            Some(0xc6) => {
                self.at += 1;
                self.big_endian(4)? as usize
            }
            _ => return Ok(self.string()?.into_bytes()),
        };
        Ok(self.take(length)?.to_vec())
    }

    fn finish(&self) -> CoreResult<()> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes"))
        }
    }
}

fn array_header(out: &mut Vec<u8>, length: usize) {
    if length < 16 {
        out.push(0x90 | length as u8);
    } else if let Ok(short) = u16::try_from(length) {
        out.push(0xdc);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(length as u32).to_be_bytes());
    }
}

fn unsigned(out: &mut Vec<u8>, value: u64) {
    if value < 128 {
        out.push(value as u8);
    } else if let Ok(byte) = u8::try_from(value) {
        out.extend_from_slice(&[0xcc, byte]);
    } else if let Ok(short) = u16::try_from(value) {
        out.push(0xcd);
        out.extend_from_slice(&short.to_be_bytes());
    } else if let Ok(word) = u32::try_from(value) {
        out.push(0xce);
        out.extend_from_slice(&word.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn string(out: &mut Vec<u8>, text: &str) {
    let length = text.len();
    if length < 32 {
        out.push(0xa0 | length as u8);
    } else if let Ok(byte) = u8::try_from(length) {
        out.extend_from_slice(&[0xd9, byte]);
    } else if let Ok(short) = u16::try_from(length) {
        out.push(0xda);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(length as u32).to_be_bytes());
    }
    out.extend_from_slice(text.as_bytes());
}

fn binary(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = bytes.len();
    if let Ok(byte) = u8::try_from(length) {
        out.extend_from_slice(&[0xc4, byte]);
    } else if let Ok(short) = u16::try_from(length) {
        out.push(0xc5);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(length as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_msgspec_does_and_reads_it_back() {
        // msgspec.msgpack.encode((1000, 2.0, 100000, 0, ["ValueError"]))
        let policy = RetryPolicy {
            initial_interval_ms: 1000,
            backoff_coefficient: 2.0,
            maximum_interval_ms: Some(100_000),
            maximum_attempts: 0,
            non_retryable_error_types: vec!["ValueError".into()],
        };
        let mut expected = vec![0x95, 0xcd, 0x03, 0xe8, 0xcb];
        expected.extend_from_slice(&2.0f64.to_be_bytes());
        expected.extend_from_slice(&[0xce, 0x00, 0x01, 0x86, 0xa0, 0x00, 0x91, 0xaa]);
        expected.extend_from_slice(b"ValueError");
        assert_eq!(encode_policy(&policy), expected);
        assert_eq!(decode_policy(&expected).unwrap(), policy);
        let unlimited = RetryPolicy {
            maximum_interval_ms: None,
            non_retryable_error_types: vec![],
            ..policy
        };
        assert_eq!(encode_policy(&unlimited)[13], 0xc0);
        assert_eq!(
            decode_policy(&encode_policy(&unlimited)).unwrap(),
            unlimited
        );
    }

    #[test]
    fn failures_round_trip_with_their_causes() {
        let failure = Failure {
            message: "outer".into(),
            error_type: "RuntimeError".into(),
            non_retryable: true,
            details: Payload(b"[1]".to_vec()),
            stack_trace: "line 1".repeat(40),
            cause: Some(Box::new(Failure {
                next_retry_delay_ms: Some(1_500),
                ..Failure::new("inner", "ValueError")
            })),
            next_retry_delay_ms: None,
        };
        assert_eq!(decode_failure(&encode_failure(&failure)).unwrap(), failure);
    }

    #[test]
    fn reads_the_failure_rows_earlier_releases_wrote() {
        // msgspec.msgpack.encode(("boom", "ValueError", False, b"null", "", None))
        let mut row = vec![0x96, 0xa4];
        row.extend_from_slice(b"boom");
        row.push(0xaa);
        row.extend_from_slice(b"ValueError");
        row.extend_from_slice(&[0xc2, 0xc4, 0x04]);
        row.extend_from_slice(b"null");
        row.extend_from_slice(&[0xa0, 0xc0]);
        let failure = decode_failure(&row).unwrap();
        assert_eq!(failure.details, Payload(b"null".to_vec()));
        assert_eq!(failure.error_type, "ValueError");
        assert!(decode_failure(&row[..row.len() - 1]).is_err());
    }
}
