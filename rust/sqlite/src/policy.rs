//! An activity's retry policy as the `activities.policy` column holds it: the MessagePack
//! array `[initial_interval_ms, backoff_coefficient, maximum_interval_ms | nil,
//! maximum_attempts, [non_retryable_error_types...]]` the Python operations write with msgspec
//! and read back to decide retries.

use mainspring_core::history::RetryPolicy;

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

#[cfg(test)]
mod tests {
    use super::encode_policy;
    use mainspring_core::history::RetryPolicy;

    #[test]
    fn encodes_as_msgspec_does() {
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
        let unlimited = RetryPolicy {
            maximum_interval_ms: None,
            non_retryable_error_types: vec![],
            ..policy
        };
        assert_eq!(encode_policy(&unlimited)[13], 0xc0);
    }
}
