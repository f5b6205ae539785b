//! Format 2: events as Protocol Buffers messages, generated from
//! `proto/mainspring/history/v1/history.proto` (the schema), and their conversion to and from
//! the typed events the engine works with.
//!
//! Decoding is where evolution is handled: a field this build does not know is skipped by
//! prost, a field an older writer did not write reads as its default, and an event kind (or a
//! timeout type) this build does not know is [`CoreError::UnsupportedHistory`] — it was written
//! by a newer engine, and guessing would replay it wrongly.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    include!("mainspring.history.v1.rs");
}

use generated::event::Attributes as Wire;
pub use generated::{Event as WireEvent, History as WireHistory};

use super::event::{
    ActivityOptions, Event, EventAttributes, RetryPolicy, TimeoutType, WorkflowStartedAttributes,
};
use super::payload::{Failure, Payload};
use crate::error::{CoreError, CoreResult};

fn failure_to_wire(failure: Failure) -> generated::Failure {
    generated::Failure {
        message: failure.message,
        error_type: failure.error_type,
        non_retryable: failure.non_retryable,
        details: failure.details.0,
        stack_trace: failure.stack_trace,
        cause: failure.cause.map(|cause| Box::new(failure_to_wire(*cause))),
        next_retry_delay_ms: failure.next_retry_delay_ms,
    }
}

fn failure_from_wire(failure: generated::Failure) -> Failure {
    Failure {
        message: failure.message,
        error_type: failure.error_type,
        non_retryable: failure.non_retryable,
        details: Payload(failure.details),
        stack_trace: failure.stack_trace,
        cause: failure
            .cause
            .map(|cause| Box::new(failure_from_wire(*cause))),
        next_retry_delay_ms: failure.next_retry_delay_ms,
    }
}

fn timeout_to_wire(timeout: TimeoutType) -> i32 {
    use generated::TimeoutType as W;
    match timeout {
        TimeoutType::ScheduleToStart => W::ScheduleToStart,
        TimeoutType::StartToClose => W::StartToClose,
        TimeoutType::ScheduleToClose => W::ScheduleToClose,
        TimeoutType::Heartbeat => W::Heartbeat,
    }
    .into()
}

fn timeout_from_wire(event_id: u64, value: i32) -> CoreResult<TimeoutType> {
    use generated::TimeoutType as W;
    match W::try_from(value) {
        Ok(W::ScheduleToStart) => Ok(TimeoutType::ScheduleToStart),
        Ok(W::StartToClose) => Ok(TimeoutType::StartToClose),
        Ok(W::ScheduleToClose) => Ok(TimeoutType::ScheduleToClose),
        Ok(W::Heartbeat) => Ok(TimeoutType::Heartbeat),
        Ok(W::Unspecified) => Err(CoreError::CorruptHistory(format!(
            "event {event_id}: an activity timeout without its type"
        ))),
        Err(_) => Err(CoreError::UnsupportedHistory(format!(
            "event {event_id} has activity timeout type {value}, which this build does not know \
             (the history was written by a newer engine)"
        ))),
    }
}

fn options_to_wire(options: ActivityOptions) -> generated::ActivityOptions {
    let policy = options.retry_policy;
    generated::ActivityOptions {
        task_queue: options.task_queue,
        schedule_to_close_ms: options.schedule_to_close_ms,
        schedule_to_start_ms: options.schedule_to_start_ms,
        start_to_close_ms: options.start_to_close_ms,
        heartbeat_ms: options.heartbeat_ms,
        retry_policy: Some(generated::RetryPolicy {
            initial_interval_ms: policy.initial_interval_ms,
            backoff_coefficient: policy.backoff_coefficient,
            maximum_interval_ms: policy.maximum_interval_ms,
            maximum_attempts: policy.maximum_attempts,
            non_retryable_error_types: policy.non_retryable_error_types,
        }),
    }
}

fn options_from_wire(options: generated::ActivityOptions) -> Option<ActivityOptions> {
    let policy = options.retry_policy?;
    Some(ActivityOptions {
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
    })
}

/// An event as its wire message, cloning what it holds (for events a store keeps).
pub fn event_to_wire(event: &Event) -> WireEvent {
    event_into_wire(event.clone())
}

/// An event as its wire message, moving what it holds (for events encoded once and dropped:
/// a task's outcome).
pub fn event_into_wire(event: Event) -> WireEvent {
    use generated as g;
    use EventAttributes as A;
    let attributes = match event.attributes {
        A::WorkflowStarted(started) => Wire::WorkflowStarted(g::WorkflowStarted {
            workflow_type: started.workflow_type,
            workflow_id: started.workflow_id,
            run_id: started.run_id,
            task_queue: started.task_queue,
            input: started.input.0,
        }),
        A::WorkflowTaskCompleted {
            seen_event_id,
            flags,
            dropped_signals,
        } => Wire::WorkflowTaskCompleted(g::WorkflowTaskCompleted {
            seen_event_id,
            flags,
            dropped_signals,
        }),
        A::ActivityScheduled {
            seq,
            activity_type,
            input,
            options,
        } => Wire::ActivityScheduled(g::ActivityScheduled {
            seq,
            activity_type,
            input: input.0,
            options: Some(options_to_wire(*options)),
        }),
        A::ActivityCompleted {
            scheduled_event_id,
            result,
            attempt,
        } => Wire::ActivityCompleted(g::ActivityCompleted {
            scheduled_event_id,
            result: result.0,
            attempt,
        }),
        A::ActivityFailed {
            scheduled_event_id,
            failure,
            attempt,
        } => Wire::ActivityFailed(g::ActivityFailed {
            scheduled_event_id,
            failure: Some(failure_to_wire(*failure)),
            attempt,
        }),
        A::ActivityTimedOut {
            scheduled_event_id,
            timeout_type,
            last_failure,
            attempt,
        } => Wire::ActivityTimedOut(g::ActivityTimedOut {
            scheduled_event_id,
            timeout_type: timeout_to_wire(timeout_type),
            last_failure: last_failure.map(|failure| failure_to_wire(*failure)),
            attempt,
        }),
        A::ActivityCancelRequested { scheduled_event_id } => {
            Wire::ActivityCancelRequested(g::ActivityCancelRequested { scheduled_event_id })
        }
        A::ActivityCanceled {
            scheduled_event_id,
            attempt,
        } => Wire::ActivityCanceled(g::ActivityCanceled {
            scheduled_event_id,
            attempt,
        }),
        A::TimerStarted { seq, duration_ms } => {
            Wire::TimerStarted(g::TimerStarted { seq, duration_ms })
        }
        A::TimerFired { started_event_id } => Wire::TimerFired(g::TimerFired { started_event_id }),
        A::TimerCanceled { started_event_id } => {
            Wire::TimerCanceled(g::TimerCanceled { started_event_id })
        }
        A::WorkflowSignaled { signal_name, input } => Wire::WorkflowSignaled(g::WorkflowSignaled {
            signal_name,
            input: input.0,
        }),
        A::WorkflowCancelRequested { reason } => {
            Wire::WorkflowCancelRequested(g::WorkflowCancelRequested { reason })
        }
        A::WorkflowCompleted { result } => {
            Wire::WorkflowCompleted(g::WorkflowCompleted { result: result.0 })
        }
        A::WorkflowFailed { failure } => Wire::WorkflowFailed(g::WorkflowFailed {
            failure: Some(failure_to_wire(*failure)),
        }),
        A::WorkflowCanceled { details } => {
            Wire::WorkflowCanceled(g::WorkflowCanceled { details: details.0 })
        }
        A::WorkflowTerminated { reason } => {
            Wire::WorkflowTerminated(g::WorkflowTerminated { reason })
        }
    };
    WireEvent {
        event_id: event.event_id,
        timestamp_ms: event.timestamp_ms,
        attributes: Some(attributes),
    }
}

fn missing(event_id: u64, kind: &str, field: &str) -> CoreError {
    CoreError::CorruptHistory(format!("event {event_id} ({kind}) has no {field}"))
}

pub fn event_from_wire(event: WireEvent) -> CoreResult<Event> {
    let mut event = event;
    event_from_wire_in_place(&mut event)
}

/// [`event_from_wire`] on a message the caller reuses (its attributes are taken): a decoder
/// that merges every row into one message moves each event once, not three times.
pub fn event_from_wire_in_place(event: &mut WireEvent) -> CoreResult<Event> {
    use EventAttributes as A;
    let event_id = event.event_id;
    let Some(attributes) = event.attributes.take() else {
        return Err(CoreError::UnsupportedHistory(format!(
            "event {event_id} is of a kind this build does not know (the history was written \
             by a newer engine)"
        )));
    };
    let attributes = match attributes {
        Wire::WorkflowStarted(started) => A::WorkflowStarted(Box::new(WorkflowStartedAttributes {
            workflow_type: started.workflow_type,
            workflow_id: started.workflow_id,
            run_id: started.run_id,
            task_queue: started.task_queue,
            input: Payload(started.input),
        })),
        Wire::WorkflowTaskCompleted(task) => A::WorkflowTaskCompleted {
            seen_event_id: task.seen_event_id,
            flags: task.flags,
            dropped_signals: task.dropped_signals,
        },
        Wire::ActivityScheduled(scheduled) => A::ActivityScheduled {
            seq: scheduled.seq,
            activity_type: scheduled.activity_type,
            input: Payload(scheduled.input),
            options: Box::new(
                scheduled
                    .options
                    .and_then(options_from_wire)
                    .ok_or_else(|| missing(event_id, "ActivityScheduled", "options"))?,
            ),
        },
        Wire::ActivityCompleted(completed) => A::ActivityCompleted {
            scheduled_event_id: completed.scheduled_event_id,
            result: Payload(completed.result),
            attempt: completed.attempt,
        },
        Wire::ActivityFailed(failed) => A::ActivityFailed {
            scheduled_event_id: failed.scheduled_event_id,
            failure: Box::new(failure_from_wire(
                failed
                    .failure
                    .ok_or_else(|| missing(event_id, "ActivityFailed", "failure"))?,
            )),
            attempt: failed.attempt,
        },
        Wire::ActivityTimedOut(timed_out) => A::ActivityTimedOut {
            scheduled_event_id: timed_out.scheduled_event_id,
            timeout_type: timeout_from_wire(event_id, timed_out.timeout_type)?,
            last_failure: timed_out
                .last_failure
                .map(|failure| Box::new(failure_from_wire(failure))),
            attempt: timed_out.attempt,
        },
        Wire::ActivityCancelRequested(requested) => A::ActivityCancelRequested {
            scheduled_event_id: requested.scheduled_event_id,
        },
        Wire::ActivityCanceled(canceled) => A::ActivityCanceled {
            scheduled_event_id: canceled.scheduled_event_id,
            attempt: canceled.attempt,
        },
        Wire::TimerStarted(started) => A::TimerStarted {
            seq: started.seq,
            duration_ms: started.duration_ms,
        },
        Wire::TimerFired(fired) => A::TimerFired {
            started_event_id: fired.started_event_id,
        },
        Wire::TimerCanceled(canceled) => A::TimerCanceled {
            started_event_id: canceled.started_event_id,
        },
        Wire::WorkflowSignaled(signaled) => A::WorkflowSignaled {
            signal_name: signaled.signal_name,
            input: Payload(signaled.input),
        },
        Wire::WorkflowCancelRequested(requested) => A::WorkflowCancelRequested {
            reason: requested.reason,
        },
        Wire::WorkflowCompleted(completed) => A::WorkflowCompleted {
            result: Payload(completed.result),
        },
        Wire::WorkflowFailed(failed) => A::WorkflowFailed {
            failure: Box::new(failure_from_wire(
                failed
                    .failure
                    .ok_or_else(|| missing(event_id, "WorkflowFailed", "failure"))?,
            )),
        },
        Wire::WorkflowCanceled(canceled) => A::WorkflowCanceled {
            details: Payload(canceled.details),
        },
        Wire::WorkflowTerminated(terminated) => A::WorkflowTerminated {
            reason: terminated.reason,
        },
    };
    Ok(Event {
        event_id,
        timestamp_ms: event.timestamp_ms,
        attributes,
    })
}
