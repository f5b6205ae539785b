//! Codec, JSON and validation.

mod common;

use common::*;
use mainspring_core::history::{
    decode_events, decode_history, encode_history, history_from_json, history_to_json,
    validate_history, ActivityOptions, EventAttributes, Failure, RetryPolicy, TimeoutType,
};
use mainspring_core::CoreError;

fn every_kind() -> Vec<EventAttributes> {
    let failure = Failure {
        message: "boom".into(),
        error_type: "ValueError".into(),
        non_retryable: true,
        details: payload("[1]"),
        stack_trace: "trace".into(),
        cause: Some(Box::new(Failure::new("root", "OSError"))),
        next_retry_delay_ms: Some(250),
    };
    let options = ActivityOptions {
        task_queue: "q".into(),
        schedule_to_close_ms: Some(5),
        schedule_to_start_ms: Some(6),
        start_to_close_ms: Some(7),
        heartbeat_ms: Some(8),
        retry_policy: RetryPolicy {
            initial_interval_ms: 9,
            backoff_coefficient: 1.5,
            maximum_interval_ms: Some(10),
            maximum_attempts: 3,
            non_retryable_error_types: vec!["Fatal".into()],
        },
    };
    vec![
        started(),
        boundary(1),
        EventAttributes::ActivityScheduled {
            seq: 1,
            activity_type: "a".into(),
            input: Payload(vec![0, 255, 10]),
            options: Box::new(options),
        },
        scheduled(2, "b"),
        scheduled(3, "c"),
        scheduled(4, "d"),
        EventAttributes::TimerStarted {
            seq: 1,
            duration_ms: 60_000,
        },
        EventAttributes::TimerStarted {
            seq: 2,
            duration_ms: 1,
        },
        EventAttributes::ActivityCompleted {
            scheduled_event_id: 3,
            result: payload("\"ok\""),
            attempt: 2,
        },
        EventAttributes::ActivityFailed {
            scheduled_event_id: 4,
            failure: Box::new(failure.clone()),
            attempt: 3,
        },
        EventAttributes::ActivityTimedOut {
            scheduled_event_id: 5,
            timeout_type: TimeoutType::Heartbeat,
            last_failure: Some(Box::new(failure.clone())),
            attempt: 1,
        },
        EventAttributes::TimerFired {
            started_event_id: 7,
        },
        EventAttributes::WorkflowSignaled {
            signal_name: "Approve".into(),
            input: payload("{}"),
        },
        EventAttributes::WorkflowCancelRequested {
            reason: "user".into(),
        },
        boundary(14),
        EventAttributes::ActivityCancelRequested {
            scheduled_event_id: 6,
        },
        EventAttributes::TimerCanceled {
            started_event_id: 8,
        },
        EventAttributes::ActivityCanceled {
            scheduled_event_id: 6,
            attempt: 1,
        },
        boundary(18),
        EventAttributes::WorkflowFailed {
            failure: Box::new(failure),
        },
    ]
}

use mainspring_core::history::Payload;

#[test]
fn binary_round_trip_of_every_event_kind() {
    let events = history(every_kind());
    let encoded = encode_history(&events);
    assert_eq!(&encoded[..4], b"MSH\x02");
    assert_eq!(decode_history(&encoded).unwrap(), events);
}

#[test]
fn json_round_trip_is_lossless() {
    let events = history(every_kind());
    let text = history_to_json(&events);
    assert!(text.contains("\"type\": \"ActivityTimedOut\""));
    let back = history_from_json(&text).unwrap();
    assert_eq!(back, events);
    assert_eq!(history_to_json(&back), text);
}

#[test]
fn terminal_events_of_every_kind_validate() {
    for terminal in [
        EventAttributes::WorkflowCompleted {
            result: payload("1"),
        },
        EventAttributes::WorkflowCanceled {
            details: payload("null"),
        },
        EventAttributes::WorkflowTerminated { reason: "x".into() },
    ] {
        validate_history(&history(vec![started(), terminal])).unwrap();
    }
}

#[test]
fn bad_bytes_are_corrupt_history_errors() {
    let encoded = encode_history(&history(vec![started()]));
    assert!(matches!(
        decode_history(b"nope"),
        Err(CoreError::CorruptHistory(_))
    ));
    assert!(matches!(
        decode_history(b""),
        Err(CoreError::CorruptHistory(_))
    ));
    let mut newer = encoded.clone();
    newer[3] = 99;
    let error = decode_history(&newer).unwrap_err();
    assert!(error.to_string().contains("version 99"), "{error}");
    assert!(
        matches!(error, CoreError::UnsupportedHistory(_)),
        "{error:?}"
    );
    let truncated = &encoded[..encoded.len() - 3];
    assert!(matches!(
        decode_events(truncated),
        Err(CoreError::CorruptHistory(_))
    ));
    let mut trailing = encoded.clone();
    trailing.push(0);
    assert!(matches!(
        decode_events(&trailing),
        Err(CoreError::CorruptHistory(_))
    ));
    assert!(matches!(
        history_from_json("{\"x\": 1}"),
        Err(CoreError::CorruptHistory(_))
    ));
}

#[test]
fn every_byte_flip_is_an_error_or_a_valid_history_never_a_panic() {
    let encoded = encode_history(&history(every_kind()));
    for index in 4..encoded.len() {
        for flip in [1u8, 0x80, 0xff] {
            let mut bytes = encoded.clone();
            bytes[index] ^= flip;
            let _ = decode_history(&bytes);
        }
    }
}

fn invalid_at(attributes: Vec<EventAttributes>) -> (u64, String) {
    match validate_history(&history(attributes)) {
        Err(CoreError::InvalidHistory { event_id, reason }) => (event_id, reason),
        other => panic!("expected InvalidHistory, got {other:?}"),
    }
}

#[test]
fn validation_rejects_broken_invariants() {
    let (id, reason) = invalid_at(vec![boundary(0)]);
    assert_eq!(id, 1);
    assert!(reason.contains("WorkflowStarted"));

    let (id, _) = invalid_at(vec![started(), started()]);
    assert_eq!(id, 2);

    let (id, reason) = invalid_at(vec![started(), boundary(1), completed(9, "1")]);
    assert_eq!(id, 3);
    assert!(reason.contains("event 9"), "{reason}");

    let (id, _) = invalid_at(vec![
        started(),
        boundary(1),
        scheduled(1, "a"),
        completed(3, "1"),
        completed(3, "1"),
    ]);
    assert_eq!(id, 5, "a second completion of one activity");

    let (id, _) = invalid_at(vec![
        started(),
        boundary(1),
        EventAttributes::TimerStarted {
            seq: 1,
            duration_ms: 1,
        },
        completed(3, "1"),
    ]);
    assert_eq!(id, 4, "an activity completion pointing at a timer");

    let (id, reason) = invalid_at(vec![
        started(),
        EventAttributes::WorkflowTerminated { reason: "x".into() },
        EventAttributes::WorkflowSignaled {
            signal_name: "s".into(),
            input: payload("1"),
        },
    ]);
    assert_eq!(id, 3);
    assert!(reason.contains("terminal"));

    let (id, _) = invalid_at(vec![started(), boundary(2)]);
    assert_eq!(id, 2, "a boundary cannot see itself");

    let mut events = history(vec![started(), boundary(1)]);
    events[1].event_id = 3;
    assert!(matches!(
        validate_history(&events),
        Err(CoreError::InvalidHistory { event_id: 3, .. })
    ));
    assert!(validate_history(&[]).is_err());
}

/// Exported by the last release of format 1 (`tests/sqlite_files/record_schema_5.py`).
const FORMAT_1_EXPORTS: [(&[u8], &str); 2] = [
    (
        include_bytes!("../../../tests/histories/format-1/checkout-done.msh"),
        include_str!("../../../tests/histories/format-1/checkout-done.json"),
    ),
    (
        include_bytes!("../../../tests/histories/format-1/failing-done.msh"),
        include_str!("../../../tests/histories/format-1/failing-done.json"),
    ),
];

#[test]
fn format_1_exports_still_decode_and_match_their_json() {
    for (encoded, json) in FORMAT_1_EXPORTS {
        assert_eq!(encoded[3], 1, "written in format 1");
        let events = decode_history(encoded).unwrap();
        assert_eq!(events, history_from_json(json).unwrap());
        // Written again, they are format 2 and read back the same.
        let again = encode_history(&events);
        assert_eq!(again[3], mainspring_core::history::FORMAT_VERSION);
        assert_eq!(decode_history(&again).unwrap(), events);
    }
}

#[test]
fn a_json_history_from_a_newer_engine_is_unsupported() {
    let json = history_to_json(&history(vec![started()]));
    let newer = json.replace("\"format_version\": 1", "\"format_version\": 7");
    assert!(matches!(
        history_from_json(&newer),
        Err(CoreError::UnsupportedHistory(_))
    ));
    let unknown_kind = json.replace("\"WorkflowStarted\"", "\"WorkflowPaused\"");
    assert!(matches!(
        history_from_json(&unknown_kind),
        Err(CoreError::UnsupportedHistory(_))
    ));
}
