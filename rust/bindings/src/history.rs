//! History functions: JSON export/import, validation, and the outcome of a closed run.

use mainspring_core::history::{
    decode_events, decode_history, encode_history, history_from_json, history_to_json,
    EventAttributes,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;

use crate::convert::{bytes, failure_to_py};
use crate::errors::guarded_detached;

/// Encoded history → lossless JSON text.
#[pyfunction]
fn history_json_from_bytes(py: Python<'_>, encoded: &[u8]) -> PyResult<String> {
    guarded_detached(py, || Ok(history_to_json(&decode_history(encoded)?)))
}

/// JSON text → encoded history (validated).
#[pyfunction]
fn history_bytes_from_json<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyBytes>> {
    let encoded = guarded_detached(py, || Ok(encode_history(&history_from_json(text)?)))?;
    Ok(PyBytes::new(py, &encoded))
}

/// Validates an encoded history; returns its number of events.
#[pyfunction]
fn validate_history(py: Python<'_>, encoded: &[u8]) -> PyResult<usize> {
    guarded_detached(py, || Ok(decode_history(encoded)?.len()))
}

/// `[(event_id, timestamp_ms, kind), ...]` of encoded events: a cheap outline for tools.
#[pyfunction]
fn history_outline(py: Python<'_>, encoded: &[u8]) -> PyResult<Vec<(u64, i64, &'static str)>> {
    guarded_detached(py, || {
        Ok(decode_events(encoded)?
            .iter()
            .map(|event| (event.event_id, event.timestamp_ms, event.attributes.kind()))
            .collect())
    })
}

/// The outcome recorded by the last of the encoded events, if it closed the run:
/// `("COMPLETED", result)`, `("FAILED", failure)`, `("CANCELED", details)`,
/// `("TERMINATED", reason)`; else `None`.
#[pyfunction]
fn run_outcome<'py>(py: Python<'py>, encoded: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
    let events = guarded_detached(py, || decode_events(encoded))?;
    let Some(last) = events.last() else {
        return Ok(None);
    };
    let outcome = match &last.attributes {
        EventAttributes::WorkflowCompleted { result } => {
            ("COMPLETED", bytes(py, result).into_any())
        }
        EventAttributes::WorkflowFailed { failure } => ("FAILED", failure_to_py(py, failure)?),
        EventAttributes::WorkflowCanceled { details } => {
            ("CANCELED", bytes(py, details).into_any())
        }
        EventAttributes::WorkflowTerminated { reason } => {
            ("TERMINATED", reason.as_str().into_bound_py_any(py)?)
        }
        _ => return Ok(None),
    };
    Ok(Some(outcome.into_bound_py_any(py)?))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(history_json_from_bytes, module)?)?;
    module.add_function(wrap_pyfunction!(history_bytes_from_json, module)?)?;
    module.add_function(wrap_pyfunction!(validate_history, module)?)?;
    module.add_function(wrap_pyfunction!(history_outline, module)?)?;
    module.add_function(wrap_pyfunction!(run_outcome, module)?)?;
    Ok(())
}
