//! `MemoryStore`: the native dispatcher and history store behind `MemoryStorage`.

use std::sync::Mutex;

use mainspring_core::history::encode_events;
use mainspring_core::memory::{MemoryStore, RunSummary};
use mainspring_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::{activity_lease_to_py, failure_from_py, payload};
use crate::errors::guarded;

#[pyclass(name = "MemoryStore", module = "mainspring._core", frozen)]
pub struct PyMemoryStore {
    inner: Mutex<MemoryStore>,
}

type LeaseTuple = (i64, i64, String, String, String, u64, i64);
pub type SummaryTuple = (
    i64,
    String,
    String,
    String,
    String,
    &'static str,
    u64,
    i64,
    Option<i64>,
    Option<String>,
    // The workflow task: (failures in a row, dropped signals, leased, the lease's holder).
    (u32, u32, bool, Option<String>),
);

pub fn summary_tuple(summary: RunSummary) -> SummaryTuple {
    (
        summary.run_key,
        summary.workflow_id,
        summary.run_id,
        summary.workflow_type,
        summary.task_queue,
        summary.status.name(),
        summary.history_length,
        summary.started_ms,
        summary.closed_ms,
        summary.last_task_failure,
        (
            summary.task_failures,
            summary.dropped_signals,
            summary.workflow_task_leased,
            summary.lease_identity,
        ),
    )
}

impl PyMemoryStore {
    fn with<T>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&mut MemoryStore) -> Result<T, CoreError>,
    ) -> PyResult<T> {
        guarded(py, || {
            let mut store = self.inner.lock().map_err(|_| {
                CoreError::InvalidCommand("memory store is unusable after an earlier panic".into())
            })?;
            work(&mut store)
        })
    }
}

#[pymethods]
impl PyMemoryStore {
    #[new]
    #[pyo3(signature = (workflow_task_retry_initial_ms = 1_000, workflow_task_retry_maximum_ms = 60_000, tick_batch = 1_000))]
    fn new(
        workflow_task_retry_initial_ms: u64,
        workflow_task_retry_maximum_ms: u64,
        tick_batch: usize,
    ) -> Self {
        let config = mainspring_core::rules::RulesConfig {
            workflow_task_retry_initial_ms,
            workflow_task_retry_maximum_ms,
            tick_batch,
        };
        PyMemoryStore {
            inner: Mutex::new(MemoryStore::new(config)),
        }
    }

    // Mirrors the Python storage call one to one; bundling the arguments would only add a type.
    #[allow(clippy::too_many_arguments)]
    fn start_workflow(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        run_id: &str,
        workflow_type: &str,
        task_queue: &str,
        input: &Bound<'_, PyAny>,
        now_ms: i64,
    ) -> PyResult<i64> {
        let input = payload(input)?;
        self.with(py, |store| {
            store.start_workflow(
                workflow_id,
                run_id,
                workflow_type,
                task_queue,
                input,
                now_ms,
            )
        })
    }

    /// `(run_key, token, workflow_id, run_id, workflow_type, history_length, deadline_ms)`.
    fn poll_workflow_task(
        &self,
        py: Python<'_>,
        task_queue: &str,
        now_ms: i64,
        lease_ms: u64,
    ) -> PyResult<Option<LeaseTuple>> {
        self.with(py, |store| {
            Ok(store
                .poll_workflow_task(task_queue, now_ms, lease_ms)
                .map(|lease| {
                    (
                        lease.run_key,
                        lease.token,
                        lease.workflow_id,
                        lease.run_id,
                        lease.workflow_type,
                        lease.history_length,
                        lease.deadline_ms,
                    )
                }))
        })
    }

    /// Encoded events of a run from `from_event_id` on.
    fn history<'py>(
        &self,
        py: Python<'py>,
        run_key: i64,
        from_event_id: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let encoded = self.with(py, |store| {
            Ok(encode_events(store.history(run_key, from_event_id)?))
        })?;
        Ok(PyBytes::new(py, &encoded))
    }

    /// `outcome` is `WorkflowRun.complete`'s encoded events, or `None` for a task that had
    /// nothing to do; `leased_length` the history length its lease handed out. Returns whether
    /// the run closed.
    #[pyo3(signature = (run_key, token, outcome, leased_length, now_ms))]
    fn complete_workflow_task(
        &self,
        py: Python<'_>,
        run_key: i64,
        token: i64,
        outcome: Option<&[u8]>,
        leased_length: u64,
        now_ms: i64,
    ) -> PyResult<bool> {
        self.with(py, |store| {
            store.complete_workflow_task_encoded(run_key, token, outcome, leased_length, now_ms)
        })
    }

    fn fail_workflow_task(
        &self,
        py: Python<'_>,
        run_key: i64,
        token: i64,
        message: &str,
        now_ms: i64,
    ) -> PyResult<()> {
        self.with(py, |store| {
            store.fail_workflow_task(run_key, token, message, now_ms)
        })
    }

    /// `(run_key, scheduled_event_id, activity_id, token, workflow_id, run_id, activity_type,
    /// input, attempt, heartbeat_details, scheduled_ms, started_ms, deadline_ms,
    /// heartbeat_timeout_ms)`, as the SQLite store's.
    fn poll_activity_task<'py>(
        &self,
        py: Python<'py>,
        task_queue: &str,
        now_ms: i64,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let lease = self.with(py, |store| Ok(store.poll_activity_task(task_queue, now_ms)))?;
        let Some(lease) = lease else { return Ok(None) };
        Ok(Some(activity_lease_to_py(py, &lease)?.into_any()))
    }

    fn complete_activity_task(
        &self,
        py: Python<'_>,
        run_key: i64,
        scheduled_event_id: u64,
        token: i64,
        result: &Bound<'_, PyAny>,
        now_ms: i64,
    ) -> PyResult<()> {
        let result = payload(result)?;
        self.with(py, |store| {
            store.complete_activity_task((run_key, scheduled_event_id), token, result, now_ms)
        })
    }

    fn fail_activity_task(
        &self,
        py: Python<'_>,
        run_key: i64,
        scheduled_event_id: u64,
        token: i64,
        failure: &Bound<'_, PyAny>,
        now_ms: i64,
    ) -> PyResult<()> {
        let failure = failure_from_py(failure)?;
        self.with(py, |store| {
            store.fail_activity_task((run_key, scheduled_event_id), token, failure, now_ms)
        })
    }

    fn heartbeat_activity_task(
        &self,
        py: Python<'_>,
        run_key: i64,
        scheduled_event_id: u64,
        token: i64,
        details: &Bound<'_, PyAny>,
        now_ms: i64,
    ) -> PyResult<()> {
        let details = payload(details)?;
        self.with(py, |store| {
            store.heartbeat_activity_task((run_key, scheduled_event_id), token, details, now_ms)
        })
    }

    fn signal_workflow(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        signal_name: &str,
        input: &Bound<'_, PyAny>,
        now_ms: i64,
    ) -> PyResult<()> {
        let input = payload(input)?;
        self.with(py, |store| {
            store.signal_workflow(workflow_id, signal_name, input, now_ms)
        })
    }

    fn request_cancel_workflow(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> PyResult<()> {
        self.with(py, |store| {
            store.request_cancel_workflow(workflow_id, reason, now_ms)
        })
    }

    fn terminate_workflow(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> PyResult<()> {
        self.with(py, |store| {
            store.terminate_workflow(workflow_id, reason, now_ms)
        })
    }

    /// `(run_key, workflow_id, run_id, workflow_type, task_queue, status, history_length,
    /// started_ms, closed_ms, last_task_failure)` of the workflow id's current run.
    fn describe(&self, py: Python<'_>, workflow_id: &str) -> PyResult<SummaryTuple> {
        self.with(py, |store| store.describe(workflow_id).map(summary_tuple))
    }

    /// Up to `limit` runs after `after_run_key`, in key order, of `status` and
    /// `workflow_type` when given (one page of `list_workflows`).
    #[pyo3(signature = (after_run_key, limit, status=None, workflow_type=None))]
    fn list(
        &self,
        py: Python<'_>,
        after_run_key: Option<i64>,
        limit: usize,
        status: Option<&str>,
        workflow_type: Option<&str>,
    ) -> PyResult<Vec<SummaryTuple>> {
        self.with(py, |store| {
            Ok(store
                .list(after_run_key, limit, status, workflow_type)
                .into_iter()
                .map(summary_tuple)
                .collect())
        })
    }

    fn tick(&self, py: Python<'_>, now_ms: i64) -> PyResult<usize> {
        self.with(py, |store| Ok(store.tick(now_ms)))
    }

    fn busy_count(&self, py: Python<'_>, now_ms: i64) -> PyResult<usize> {
        self.with(py, |store| Ok(store.busy_count(now_ms)))
    }

    fn next_wakeup_ms(&self, py: Python<'_>, now_ms: i64) -> PyResult<Option<i64>> {
        self.with(py, |store| Ok(store.next_wakeup_ms(now_ms)))
    }
}
