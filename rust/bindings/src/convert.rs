//! Tuples across the boundary. Jobs and commands travel as plain tuples (tag first) because
//! building and reading tuples is the cheapest thing PyO3 does; the layouts are mirrored in
//! `python/mainspring/_protocol.py` and described in ARCHITECTURE.md.

use mainspring_core::history::{ActivityOptions, Failure, Payload, RetryPolicy};
use mainspring_core::replay::{Activation, ActivityResolution, Command, Job};
use mainspring_core::rules::{ActivityTaskLease, WorkflowTaskLease};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

pub fn payload(object: &Bound<'_, PyAny>) -> PyResult<Payload> {
    Ok(Payload(object.cast::<PyBytes>()?.as_bytes().to_vec()))
}

pub fn bytes<'py>(py: Python<'py>, payload: &Payload) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &payload.0)
}

/// `(message, error_type, non_retryable, details, stack_trace, cause | None,
/// next_retry_delay_ms | None)`
pub fn failure_from_py(object: &Bound<'_, PyAny>) -> PyResult<Failure> {
    let tuple = object.cast::<PyTuple>()?;
    let cause = tuple.get_item(5)?;
    let next_retry_delay = tuple.get_item(6)?;
    Ok(Failure {
        message: tuple.get_item(0)?.extract()?,
        error_type: tuple.get_item(1)?.extract()?,
        non_retryable: tuple.get_item(2)?.extract()?,
        details: payload(&tuple.get_item(3)?)?,
        stack_trace: tuple.get_item(4)?.extract()?,
        cause: if cause.is_none() {
            None
        } else {
            Some(Box::new(failure_from_py(&cause)?))
        },
        next_retry_delay_ms: next_retry_delay.extract()?,
    })
}

pub fn failure_to_py<'py>(py: Python<'py>, failure: &Failure) -> PyResult<Bound<'py, PyAny>> {
    let cause = match &failure.cause {
        Some(cause) => failure_to_py(py, cause)?,
        None => py.None().into_bound(py),
    };
    (
        failure.message.as_str(),
        failure.error_type.as_str(),
        failure.non_retryable,
        bytes(py, &failure.details),
        failure.stack_trace.as_str(),
        cause,
        failure.next_retry_delay_ms,
    )
        .into_bound_py_any(py)
}

fn job_to_py<'py>(py: Python<'py>, job: &Job) -> PyResult<Bound<'py, PyAny>> {
    match job {
        Job::StartWorkflow {
            workflow_type,
            workflow_id,
            run_id,
            task_queue,
            input,
        } => (
            0u8,
            workflow_type.as_str(),
            workflow_id.as_str(),
            run_id.as_str(),
            task_queue.as_str(),
            bytes(py, input),
        )
            .into_bound_py_any(py),
        Job::ResolveActivity {
            seq,
            attempt,
            resolution,
        } => {
            let (kind, detail, timeout): (u8, Bound<'py, PyAny>, Option<&str>) = match resolution {
                ActivityResolution::Completed { result } => (0, bytes(py, result).into_any(), None),
                ActivityResolution::Failed { failure } => (1, failure_to_py(py, failure)?, None),
                ActivityResolution::TimedOut {
                    timeout_type,
                    last_failure,
                } => {
                    let detail = match last_failure {
                        Some(failure) => failure_to_py(py, failure)?,
                        None => py.None().into_bound(py),
                    };
                    (2, detail, Some(timeout_type.name()))
                }
                ActivityResolution::Canceled => (3, py.None().into_bound(py), None),
            };
            (1u8, *seq, *attempt, kind, detail, timeout).into_bound_py_any(py)
        }
        Job::FireTimer { seq } => (2u8, *seq).into_bound_py_any(py),
        Job::Signal { name, input } => (3u8, name.as_str(), bytes(py, input)).into_bound_py_any(py),
        Job::CancelWorkflow { reason } => (4u8, reason.as_str()).into_bound_py_any(py),
    }
}

/// `(replaying, now_ms, [job, ...])`
pub fn activation_to_py<'py>(
    py: Python<'py>,
    activation: &Activation,
) -> PyResult<Bound<'py, PyAny>> {
    let jobs = PyList::empty(py);
    for job in &activation.jobs {
        jobs.append(job_to_py(py, job)?)?;
    }
    (
        activation.replaying,
        activation.now_ms,
        jobs,
        activation.flags,
    )
        .into_bound_py_any(py)
}

fn optional_ms(object: Bound<'_, PyAny>) -> PyResult<Option<u64>> {
    object.extract()
}

fn activity_options(tuple: &Bound<'_, PyTuple>) -> PyResult<ActivityOptions> {
    Ok(ActivityOptions {
        task_queue: tuple.get_item(4)?.extract()?,
        schedule_to_close_ms: optional_ms(tuple.get_item(5)?)?,
        schedule_to_start_ms: optional_ms(tuple.get_item(6)?)?,
        start_to_close_ms: optional_ms(tuple.get_item(7)?)?,
        heartbeat_ms: optional_ms(tuple.get_item(8)?)?,
        retry_policy: RetryPolicy {
            initial_interval_ms: tuple.get_item(9)?.extract()?,
            backoff_coefficient: tuple.get_item(10)?.extract()?,
            maximum_interval_ms: optional_ms(tuple.get_item(11)?)?,
            maximum_attempts: tuple.get_item(12)?.extract()?,
            non_retryable_error_types: tuple.get_item(13)?.extract()?,
        },
    })
}

/// A command from its tuple. `replaying`: the command is only matched against a recorded
/// event (by kind, sequence number and type; inputs and options are not compared), so a
/// ScheduleActivity's input and options are not read — replay's hot path.
pub fn command_from_py(object: &Bound<'_, PyAny>, replaying: bool) -> PyResult<Command> {
    let tuple = object.cast::<PyTuple>()?;
    let tag: u8 = tuple.get_item(0)?.extract()?;
    Ok(match tag {
        0 if replaying => Command::ScheduleActivity {
            seq: tuple.get_item(1)?.extract()?,
            activity_type: tuple.get_item(2)?.extract()?,
            input: Payload::default(),
            options: Box::default(),
        },
        0 => Command::ScheduleActivity {
            seq: tuple.get_item(1)?.extract()?,
            activity_type: tuple.get_item(2)?.extract()?,
            input: payload(&tuple.get_item(3)?)?,
            options: Box::new(activity_options(tuple)?),
        },
        1 => Command::RequestCancelActivity {
            seq: tuple.get_item(1)?.extract()?,
        },
        2 => Command::StartTimer {
            seq: tuple.get_item(1)?.extract()?,
            duration_ms: tuple.get_item(2)?.extract()?,
        },
        3 => Command::CancelTimer {
            seq: tuple.get_item(1)?.extract()?,
        },
        4 => Command::CompleteWorkflow {
            result: payload(&tuple.get_item(1)?)?,
        },
        5 => Command::FailWorkflow {
            failure: Box::new(failure_from_py(&tuple.get_item(1)?)?),
        },
        6 => Command::CancelWorkflow {
            details: payload(&tuple.get_item(1)?)?,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown command tag {other}"
            )))
        }
    })
}

/// `(run_key, scheduled_event_id, activity_id, token, workflow_id, run_id, activity_type,
/// input, attempt, heartbeat_details, scheduled_ms, started_ms, deadline_ms,
/// heartbeat_timeout_ms)`: a leased attempt, the same from every store.
pub fn activity_lease_to_py<'py>(
    py: Python<'py>,
    lease: &ActivityTaskLease,
) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            lease.key.0.into_bound_py_any(py)?,
            lease.key.1.into_bound_py_any(py)?,
            lease.activity_id.as_str().into_bound_py_any(py)?,
            lease.token.into_bound_py_any(py)?,
            lease.workflow_id.as_str().into_bound_py_any(py)?,
            lease.run_id.as_str().into_bound_py_any(py)?,
            lease.activity_type.as_str().into_bound_py_any(py)?,
            bytes(py, &lease.input).into_any(),
            lease.attempt.into_bound_py_any(py)?,
            bytes(py, &lease.heartbeat_details).into_any(),
            lease.scheduled_ms.into_bound_py_any(py)?,
            lease.started_ms.into_bound_py_any(py)?,
            lease.deadline_ms.into_bound_py_any(py)?,
            lease.heartbeat_timeout_ms.into_bound_py_any(py)?,
        ],
    )
}

/// `(run_key, workflow_id, run_id, workflow_type, history_length, token, tail_start, tail)`:
/// a leased workflow task with the events from `tail_start` on.
pub fn workflow_lease_to_py<'py>(
    py: Python<'py>,
    lease: &WorkflowTaskLease,
    tail: &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    (
        lease.run_key,
        lease.workflow_id.as_str(),
        lease.run_id.as_str(),
        lease.workflow_type.as_str(),
        lease.history_length,
        lease.token,
        lease.tail_start,
        PyBytes::new(py, tail),
    )
        .into_bound_py_any(py)
}
