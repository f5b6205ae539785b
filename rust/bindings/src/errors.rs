//! The one funnel every call goes through: core errors become the typed exceptions of
//! `mainspring.errors` (defined in Python, looked up when raised, so they carry Python-side
//! attributes), and a Rust panic becomes `InternalError`, never an aborted interpreter.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mainspring_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

pub(crate) fn raise(py: Python<'_>, class_name: &str, args: Bound<'_, PyTuple>) -> PyErr {
    let class = py
        .import("mainspring.errors")
        .and_then(|module| module.getattr(class_name));
    match class {
        Ok(class) => match class.call1(args) {
            Ok(instance) => PyErr::from_value(instance),
            Err(error) => error,
        },
        Err(error) => error,
    }
}

pub fn to_py_error(py: Python<'_>, error: CoreError) -> PyErr {
    let message = error.to_string();
    let simple = |class_name: &str| match PyTuple::new(py, [message.clone()]) {
        Ok(args) => raise(py, class_name, args),
        Err(error) => error,
    };
    match error {
        CoreError::CorruptHistory(_) => simple("CorruptHistoryError"),
        CoreError::UnsupportedHistory(_) => simple("UnsupportedHistoryError"),
        CoreError::InvalidHistory { .. } => simple("InvalidHistoryError"),
        CoreError::NonDeterminism {
            event_id,
            recorded,
            issued,
        } => {
            let args = (message, event_id, recorded, issued).into_pyobject(py);
            match args {
                Ok(args) => raise(py, "NonDeterminismError", args),
                Err(error) => error,
            }
        }
        CoreError::InvalidCommand(_) => simple("InvalidCommandError"),
        CoreError::WorkflowNotFound(_) => simple("WorkflowNotFoundError"),
        CoreError::WorkflowAlreadyStarted(_) => simple("WorkflowAlreadyStartedError"),
        CoreError::WorkflowNotRunning(_) => simple("WorkflowNotRunningError"),
        CoreError::StaleTask(_) => simple("StaleTaskError"),
        CoreError::Conflict(_) => simple("StorageConflictError"),
        CoreError::CorruptRecord(_) => simple("StorageError"),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

fn internal(py: Python<'_>, message: String) -> PyErr {
    let text = format!("Mainspring native core panicked (a bug; please report it): {message}");
    match PyTuple::new(py, [text]) {
        Ok(args) => raise(py, "InternalError", args),
        Err(error) => error,
    }
}

/// Runs core work with the GIL held (short calls on hot paths).
pub fn guarded<T>(py: Python<'_>, work: impl FnOnce() -> Result<T, CoreError>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result.map_err(|error| to_py_error(py, error)),
        Err(payload) => Err(internal(py, panic_message(payload))),
    }
}

/// Runs long core work (whole-history decode, JSON) with the GIL released.
pub fn guarded_detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(work)).map_err(panic_message));
    match outcome {
        Ok(result) => result.map_err(|error| to_py_error(py, error)),
        Err(message) => Err(internal(py, message)),
    }
}
