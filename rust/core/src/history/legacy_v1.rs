//! Format 1, frozen: events as a postcard sequence (the encoding of releases up to schema 5).
//!
//! Postcard is not self-describing (variants by index, fields by position), so these types are
//! a frozen copy of the events as format 1 wrote them: they never change, and the current
//! event types may. Read only: stored rows are rewritten to format 2 by the SQLite migration,
//! and exported format-1 histories still load.

use serde::Deserialize;

use super::event::{
    ActivityOptions, Event, EventAttributes, RetryPolicy, TimeoutType, WorkflowStartedAttributes,
};
use super::payload::{Failure, Payload};
use crate::error::{CoreError, CoreResult};

#[derive(Deserialize)]
struct V1Event {
    event_id: u64,
    timestamp_ms: i64,
    attributes: V1Attributes,
}

#[derive(Deserialize)]
struct V1RetryPolicy {
    initial_interval_ms: u64,
    backoff_coefficient: f64,
    maximum_interval_ms: Option<u64>,
    maximum_attempts: u32,
    non_retryable_error_types: Vec<String>,
}

#[derive(Deserialize)]
struct V1ActivityOptions {
    task_queue: String,
    schedule_to_close_ms: Option<u64>,
    schedule_to_start_ms: Option<u64>,
    start_to_close_ms: Option<u64>,
    heartbeat_ms: Option<u64>,
    retry_policy: V1RetryPolicy,
}

#[derive(Deserialize)]
enum V1TimeoutType {
    ScheduleToStart,
    StartToClose,
    ScheduleToClose,
    Heartbeat,
}

#[derive(Deserialize)]
struct V1Failure {
    message: String,
    error_type: String,
    non_retryable: bool,
    #[serde(with = "serde_bytes_vec")]
    details: Vec<u8>,
    stack_trace: String,
    cause: Option<Box<V1Failure>>,
}

#[derive(Deserialize)]
struct V1Started {
    workflow_type: String,
    workflow_id: String,
    run_id: String,
    task_queue: String,
    #[serde(with = "serde_bytes_vec")]
    input: Vec<u8>,
}

/// Postcard writes a byte string as its length and the bytes; a `Vec<u8>` as a sequence would
/// read the same length-prefixed bytes, but through `deserialize_bytes` is what format 1 used.
mod serde_bytes_vec {
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("payload bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

/// Variant order is the format: index 0 is `WorkflowStarted`, and so on.
#[derive(Deserialize)]
enum V1Attributes {
    WorkflowStarted(Box<V1Started>),
    WorkflowTaskCompleted {
        seen_event_id: u64,
        flags: u64,
    },
    ActivityScheduled {
        seq: u32,
        activity_type: String,
        #[serde(with = "serde_bytes_vec")]
        input: Vec<u8>,
        options: Box<V1ActivityOptions>,
    },
    ActivityCompleted {
        scheduled_event_id: u64,
        #[serde(with = "serde_bytes_vec")]
        result: Vec<u8>,
        attempt: u32,
    },
    ActivityFailed {
        scheduled_event_id: u64,
        failure: Box<V1Failure>,
        attempt: u32,
    },
    ActivityTimedOut {
        scheduled_event_id: u64,
        timeout_type: V1TimeoutType,
        last_failure: Option<Box<V1Failure>>,
        attempt: u32,
    },
    ActivityCancelRequested {
        scheduled_event_id: u64,
    },
    ActivityCanceled {
        scheduled_event_id: u64,
        attempt: u32,
    },
    TimerStarted {
        seq: u32,
        duration_ms: u64,
    },
    TimerFired {
        started_event_id: u64,
    },
    TimerCanceled {
        started_event_id: u64,
    },
    WorkflowSignaled {
        signal_name: String,
        #[serde(with = "serde_bytes_vec")]
        input: Vec<u8>,
    },
    WorkflowCancelRequested {
        reason: String,
    },
    WorkflowCompleted {
        #[serde(with = "serde_bytes_vec")]
        result: Vec<u8>,
    },
    WorkflowFailed {
        failure: Box<V1Failure>,
    },
    WorkflowCanceled {
        #[serde(with = "serde_bytes_vec")]
        details: Vec<u8>,
    },
    WorkflowTerminated {
        reason: String,
    },
}

impl From<V1Failure> for Failure {
    fn from(failure: V1Failure) -> Self {
        Failure {
            message: failure.message,
            error_type: failure.error_type,
            non_retryable: failure.non_retryable,
            details: Payload(failure.details),
            stack_trace: failure.stack_trace,
            cause: failure.cause.map(|cause| Box::new((*cause).into())),
            next_retry_delay_ms: None,
        }
    }
}

fn failure(failure: V1Failure) -> Box<Failure> {
    Box::new(failure.into())
}

impl From<V1ActivityOptions> for ActivityOptions {
    fn from(options: V1ActivityOptions) -> Self {
        let policy = options.retry_policy;
        ActivityOptions {
            task_queue: options.task_queue,
            schedule_to_close_ms: options.schedule_to_close_ms,
            schedule_to_start_ms: options.schedule_to_start_ms,
            start_to_close_ms: options.start_to_close_ms,
            heartbeat_ms: options.heartbeat_ms,
            retry_policy: RetryPolicy {
                initial_interval_ms: policy.initial_interval_ms,
                backoff_coefficient: policy.backoff_coefficient,
                maximum_interval_ms: policy.maximum_interval_ms,
                maximum_attempts: policy.maximum_attempts,
                non_retryable_error_types: policy.non_retryable_error_types,
            },
        }
    }
}

impl From<V1Attributes> for EventAttributes {
    fn from(attributes: V1Attributes) -> Self {
        use V1Attributes as V1;
        match attributes {
            V1::WorkflowStarted(started) => {
                let started = *started;
                EventAttributes::WorkflowStarted(Box::new(WorkflowStartedAttributes {
                    workflow_type: started.workflow_type,
                    workflow_id: started.workflow_id,
                    run_id: started.run_id,
                    task_queue: started.task_queue,
                    input: Payload(started.input),
                }))
            }
            V1::WorkflowTaskCompleted {
                seen_event_id,
                flags,
            } => EventAttributes::WorkflowTaskCompleted {
                seen_event_id,
                flags,
                dropped_signals: 0,
            },
            V1::ActivityScheduled {
                seq,
                activity_type,
                input,
                options,
            } => EventAttributes::ActivityScheduled {
                seq,
                activity_type,
                input: Payload(input),
                options: Box::new((*options).into()),
            },
            V1::ActivityCompleted {
                scheduled_event_id,
                result,
                attempt,
            } => EventAttributes::ActivityCompleted {
                scheduled_event_id,
                result: Payload(result),
                attempt,
            },
            V1::ActivityFailed {
                scheduled_event_id,
                failure: recorded,
                attempt,
            } => EventAttributes::ActivityFailed {
                scheduled_event_id,
                failure: failure(*recorded),
                attempt,
            },
            V1::ActivityTimedOut {
                scheduled_event_id,
                timeout_type,
                last_failure,
                attempt,
            } => EventAttributes::ActivityTimedOut {
                scheduled_event_id,
                timeout_type: match timeout_type {
                    V1TimeoutType::ScheduleToStart => TimeoutType::ScheduleToStart,
                    V1TimeoutType::StartToClose => TimeoutType::StartToClose,
                    V1TimeoutType::ScheduleToClose => TimeoutType::ScheduleToClose,
                    V1TimeoutType::Heartbeat => TimeoutType::Heartbeat,
                },
                last_failure: last_failure.map(|recorded| failure(*recorded)),
                attempt,
            },
            V1::ActivityCancelRequested { scheduled_event_id } => {
                EventAttributes::ActivityCancelRequested { scheduled_event_id }
            }
            V1::ActivityCanceled {
                scheduled_event_id,
                attempt,
            } => EventAttributes::ActivityCanceled {
                scheduled_event_id,
                attempt,
            },
            V1::TimerStarted { seq, duration_ms } => {
                EventAttributes::TimerStarted { seq, duration_ms }
            }
            V1::TimerFired { started_event_id } => EventAttributes::TimerFired { started_event_id },
            V1::TimerCanceled { started_event_id } => {
                EventAttributes::TimerCanceled { started_event_id }
            }
            V1::WorkflowSignaled { signal_name, input } => EventAttributes::WorkflowSignaled {
                signal_name,
                input: Payload(input),
            },
            V1::WorkflowCancelRequested { reason } => {
                EventAttributes::WorkflowCancelRequested { reason }
            }
            V1::WorkflowCompleted { result } => EventAttributes::WorkflowCompleted {
                result: Payload(result),
            },
            V1::WorkflowFailed { failure: recorded } => EventAttributes::WorkflowFailed {
                failure: failure(*recorded),
            },
            V1::WorkflowCanceled { details } => EventAttributes::WorkflowCanceled {
                details: Payload(details),
            },
            V1::WorkflowTerminated { reason } => EventAttributes::WorkflowTerminated { reason },
        }
    }
}

fn corrupt(error: impl std::fmt::Display) -> CoreError {
    CoreError::CorruptHistory(format!("undecodable format-1 events: {error}"))
}

/// Decodes the body of a format-1 history (after its header): a postcard sequence of events.
pub fn decode_body(body: &[u8]) -> CoreResult<Vec<Event>> {
    let (events, rest): (Vec<V1Event>, &[u8]) = postcard::take_from_bytes(body).map_err(corrupt)?;
    if !rest.is_empty() {
        return Err(CoreError::CorruptHistory(format!(
            "{} trailing bytes after the last event",
            rest.len()
        )));
    }
    Ok(events.into_iter().map(V1Event::into_event).collect())
}

/// Decodes one stored format-1 row (one postcard event, no header): for migrations.
pub fn decode_row(row: &[u8]) -> CoreResult<Event> {
    let (event, rest): (V1Event, &[u8]) = postcard::take_from_bytes(row).map_err(corrupt)?;
    if !rest.is_empty() {
        return Err(corrupt(format!("{} trailing bytes in a row", rest.len())));
    }
    Ok(event.into_event())
}

impl V1Event {
    fn into_event(self) -> Event {
        Event {
            event_id: self.event_id,
            timestamp_ms: self.timestamp_ms,
            attributes: self.attributes.into(),
        }
    }
}
