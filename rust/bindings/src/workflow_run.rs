//! `WorkflowRun`: one run's replay state machine, driven once per activation.

use std::sync::Mutex;

use mainspring_core::history::{decode_event_row, decode_events, encode_events_owned, Event};
use mainspring_core::replay::WorkflowRun;
use mainspring_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::convert::{activation_to_py, command_from_py, failure_from_py};
use crate::errors::{guarded, guarded_detached, to_py_error};

/// Whole histories larger than this decode with the GIL released (a few events' worth).
const DETACHED_HISTORY_BYTES: usize = 2 * 1024;
/// Tails larger than this decode with the GIL released.
const DETACHED_TAIL_BYTES: usize = 64 * 1024;

#[pyclass(name = "WorkflowRun", module = "mainspring._core", frozen)]
pub struct PyWorkflowRun {
    inner: Mutex<WorkflowRun>,
}

fn poisoned() -> CoreError {
    CoreError::InvalidCommand("workflow run state is unusable after an earlier panic".into())
}

#[pymethods]
impl PyWorkflowRun {
    #[new]
    fn new() -> Self {
        PyWorkflowRun {
            inner: Mutex::new(WorkflowRun::new()),
        }
    }

    /// Appends encoded events (a history, or the tail fetched since the last task), decoded
    /// and validated. A whole history (a cache miss) or a large tail is decoded with the GIL
    /// released, so other threads run meanwhile; a few events (a new run's first task, the
    /// usual tail) decode faster than the GIL changes hands.
    fn add_events(&self, py: Python<'_>, encoded: &[u8]) -> PyResult<()> {
        let add = || {
            let events = decode_events(encoded)?;
            self.inner
                .lock()
                .map_err(|_| poisoned())?
                .add_events(events)
        };
        // The usual case, a small tail, decides without looking at the run.
        if encoded.len() <= DETACHED_HISTORY_BYTES {
            return guarded(py, add);
        }
        let whole_history = self.inner.lock().map(|run| run.history_length() == 0);
        if whole_history.unwrap_or(false) || encoded.len() > DETACHED_TAIL_BYTES {
            guarded_detached(py, add)
        } else {
            guarded(py, add)
        }
    }

    /// Appends encoded events (if any: what the last commit appended) and then one event row,
    /// in one call: what the worker feeds an instance it runs ahead of the store.
    #[pyo3(signature = (encoded, row))]
    fn add_events_then_row(
        &self,
        py: Python<'_>,
        encoded: Option<&[u8]>,
        row: &[u8],
    ) -> PyResult<()> {
        guarded(py, || {
            let mut events = match encoded {
                Some(encoded) => decode_events(encoded)?,
                None => Vec::with_capacity(1),
            };
            events.push(decode_event_row(row)?);
            self.inner
                .lock()
                .map_err(|_| poisoned())?
                .add_events(events)
        })
    }

    #[getter]
    fn history_length(&self) -> PyResult<u64> {
        Ok(self
            .inner
            .lock()
            .map(|run| run.history_length())
            .unwrap_or(0))
    }

    /// Roughly the bytes the events it still keeps hold (replay drops the ones it is past).
    #[getter]
    fn retained_bytes(&self) -> usize {
        self.inner
            .lock()
            .map(|run| run.retained_bytes())
            .unwrap_or(0)
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.inner.lock().map(|run| run.is_closed()).unwrap_or(true)
    }

    /// `(replaying, now_ms, jobs, flags)` or `None` when there is nothing to deliver.
    #[pyo3(signature = (now_ms, allow_live = true))]
    fn next_activation<'py>(
        &self,
        py: Python<'py>,
        now_ms: i64,
        allow_live: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let activation = guarded(py, || {
            self.inner
                .lock()
                .map_err(|_| poisoned())?
                .next_activation(now_ms, allow_live)
        })?;
        activation
            .map(|activation| activation_to_py(py, &activation))
            .transpose()
    }

    /// Completes the outstanding activation. Returns the encoded outcome events to commit for a
    /// live activation, `None` for a replayed one.
    fn complete<'py>(
        &self,
        py: Python<'py>,
        commands: &Bound<'py, PyList>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        // One lock for the whole completion: the commands are read knowing what kind of
        // activation they answer (a replayed one needs less of them).
        let mut run = self.inner.lock().map_err(|_| to_py_error(py, poisoned()))?;
        let replaying = run.is_replaying();
        let commands = commands
            .iter()
            .map(|command| command_from_py(&command, replaying))
            .collect::<PyResult<Vec<_>>>()?;
        let (task_time_ms, outcome) = guarded(py, || {
            let task_time_ms = run.live_now_ms();
            Ok((task_time_ms, run.complete(commands)?))
        })?;
        drop(run);
        if outcome.is_empty() {
            return Ok(None);
        }
        // Outcome events carry no id yet (the store assigns ids when it commits) but the time
        // the workflow code saw: replay must give that code the same time again.
        let timestamp_ms = task_time_ms.unwrap_or(0);
        let events: Vec<Event> = outcome
            .into_iter()
            .map(|attributes| Event {
                event_id: 0,
                timestamp_ms,
                attributes,
            })
            .collect();
        Ok(Some(PyBytes::new(py, &encode_events_owned(events))))
    }

    /// Counts a signal the live activation dropped (its payload did not decode): its task's
    /// boundary records it.
    fn note_dropped_signal(&self, py: Python<'_>) -> PyResult<()> {
        guarded(py, || {
            self.inner
                .lock()
                .map_err(|_| poisoned())?
                .note_dropped_signal();
            Ok(())
        })
    }

    /// The encoded outcome that fails the run at `now_ms` with `failure` (a failure tuple),
    /// whatever the state of replay (a divergence the workflow lists as a run failure).
    fn fail_run<'py>(
        &self,
        py: Python<'py>,
        now_ms: i64,
        failure: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let failure = failure_from_py(failure)?;
        let outcome = guarded(py, || {
            Ok(self.inner.lock().map_err(|_| poisoned())?.fail_run(failure))
        })?;
        let events: Vec<Event> = outcome
            .into_iter()
            .map(|attributes| Event {
                event_id: 0,
                timestamp_ms: now_ms,
                attributes,
            })
            .collect();
        Ok(PyBytes::new(py, &encode_events_owned(events)))
    }
}
