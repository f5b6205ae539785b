//! Event rows: encoding one inbound event as a store stores it (what a worker feeds an
//! instance that runs ahead of the store: the fused start and fused results), and joining
//! rows into encoded events.

use mainspring_core::history::{
    encode_event_row, join_event_rows, Event, EventAttributes, Failure, TimeoutType,
    WorkflowStartedAttributes,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::guarded;
use pyo3::types::{PyBytes, PyTuple};

use crate::convert::{failure_from_py, payload};

fn timeout_type(name: &str) -> PyResult<TimeoutType> {
    Ok(match name {
        "schedule_to_start" => TimeoutType::ScheduleToStart,
        "start_to_close" => TimeoutType::StartToClose,
        "schedule_to_close" => TimeoutType::ScheduleToClose,
        "heartbeat" => TimeoutType::Heartbeat,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown timeout type {other}"
            )))
        }
    })
}

fn optional_failure(object: Bound<'_, PyAny>) -> PyResult<Option<Box<Failure>>> {
    if object.is_none() {
        Ok(None)
    } else {
        Ok(Some(Box::new(failure_from_py(&object)?)))
    }
}

/// Encodes one inbound or external event as a row. `kind` names the event; `args` are its
/// attributes in declaration order (payloads as bytes, failures as failure tuples).
#[pyfunction]
fn encode_inbound_row<'py>(
    py: Python<'py>,
    event_id: u64,
    timestamp_ms: i64,
    kind: &str,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyBytes>> {
    let item = |index: usize| args.get_item(index);
    let attributes = match kind {
        "WorkflowStarted" => {
            EventAttributes::WorkflowStarted(Box::new(WorkflowStartedAttributes {
                workflow_type: item(0)?.extract()?,
                workflow_id: item(1)?.extract()?,
                run_id: item(2)?.extract()?,
                task_queue: item(3)?.extract()?,
                input: payload(&item(4)?)?,
            }))
        }
        "WorkflowSignaled" => EventAttributes::WorkflowSignaled {
            signal_name: item(0)?.extract()?,
            input: payload(&item(1)?)?,
        },
        "WorkflowCancelRequested" => EventAttributes::WorkflowCancelRequested {
            reason: item(0)?.extract()?,
        },
        "WorkflowTerminated" => EventAttributes::WorkflowTerminated {
            reason: item(0)?.extract()?,
        },
        "ActivityCompleted" => EventAttributes::ActivityCompleted {
            scheduled_event_id: item(0)?.extract()?,
            result: payload(&item(1)?)?,
            attempt: item(2)?.extract()?,
        },
        "ActivityFailed" => EventAttributes::ActivityFailed {
            scheduled_event_id: item(0)?.extract()?,
            failure: Box::new(failure_from_py(&item(1)?)?),
            attempt: item(2)?.extract()?,
        },
        "ActivityTimedOut" => EventAttributes::ActivityTimedOut {
            scheduled_event_id: item(0)?.extract()?,
            timeout_type: timeout_type(&item(1)?.extract::<String>()?)?,
            last_failure: optional_failure(item(2)?)?,
            attempt: item(3)?.extract()?,
        },
        "ActivityCanceled" => EventAttributes::ActivityCanceled {
            scheduled_event_id: item(0)?.extract()?,
            attempt: item(1)?.extract()?,
        },
        "TimerFired" => EventAttributes::TimerFired {
            started_event_id: item(0)?.extract()?,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "{other} is not an event a storage appends by itself"
            )))
        }
    };
    let event = Event {
        event_id,
        timestamp_ms,
        attributes,
    };
    Ok(PyBytes::new(py, &encode_event_row(&event)))
}

/// Rows (from `outcome_rows` / `encode_inbound_row`) in event order → encoded events.
#[pyfunction]
fn join_rows<'py>(py: Python<'py>, rows: Vec<Bound<'py, PyBytes>>) -> Bound<'py, PyBytes> {
    let slices: Vec<&[u8]> = rows.iter().map(|row| row.as_bytes()).collect();
    PyBytes::new(py, &join_event_rows(&slices))
}

/// A stored row of history format 1 (postcard, schema versions up to 5 of the stores of
/// earlier releases) rewritten as format 2: what a store's migration applies to every row.
#[pyfunction]
fn upgrade_event_row<'py>(py: Python<'py>, row: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let upgraded = guarded(py, || mainspring_core::history::upgrade_event_row(row))?;
    Ok(PyBytes::new(py, &upgraded))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(upgrade_event_row, module)?)?;
    module.add_function(wrap_pyfunction!(encode_inbound_row, module)?)?;
    module.add_function(wrap_pyfunction!(join_rows, module)?)?;
    Ok(())
}
