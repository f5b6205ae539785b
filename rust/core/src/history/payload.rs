//! Opaque payload bytes and the failure record that crosses every boundary.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// User data, already encoded by the SDK (msgspec JSON). The core never looks inside.
///
/// In binary encodings it is raw bytes; in human-readable ones (JSON export) it is standard
/// base64, so the export is lossless for any bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload(pub Vec<u8>);

impl Payload {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Payload(bytes.into())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map(Payload)
                .map_err(serde::de::Error::custom)
        } else {
            struct BytesVisitor;
            impl<'de> serde::de::Visitor<'de> for BytesVisitor {
                type Value = Payload;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("payload bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                    Ok(Payload(v.to_vec()))
                }
                fn visit_borrowed_bytes<E: serde::de::Error>(
                    self,
                    v: &'de [u8],
                ) -> Result<Payload, E> {
                    Ok(Payload(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                    Ok(Payload(v))
                }
            }
            deserializer.deserialize_bytes(BytesVisitor)
        }
    }
}

/// A failure as recorded in history: an error raised by an activity or by workflow code.
/// `cause` chains the way Python's `__cause__` does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub message: String,
    /// The error's type name (`ValueError`, `ApplicationError` type, ...): what
    /// `non_retryable_error_types` matches against.
    pub error_type: String,
    pub non_retryable: bool,
    pub details: Payload,
    pub stack_trace: String,
    pub cause: Option<Box<Failure>>,
    /// Overrides the retry policy's next delay (`ApplicationError(next_retry_delay=...)`).
    /// Added in format 2: JSON written before it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_delay_ms: Option<u64>,
}

impl Failure {
    /// Roughly the heap bytes this failure and its causes own.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Failure>()
            + self.message.len()
            + self.error_type.len()
            + self.details.0.len()
            + self.stack_trace.len()
            + self.cause.as_ref().map_or(0, |cause| cause.heap_bytes())
    }

    pub fn new(message: impl Into<String>, error_type: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            error_type: error_type.into(),
            ..Failure::default()
        }
    }
}
