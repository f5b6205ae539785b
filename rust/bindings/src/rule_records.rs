//! `RunRecord` and `ActivityRecord` for stores written in Python: the rules' records, made
//! from and flattened into the rows of `mainspring_core::rules::rows` (the layout every
//! database store keeps), so no store maps a record its own way.

use mainspring_core::memory::RunSummary;
use mainspring_core::rules::{
    ActivityRecord, ActivityRow, ActivityTaskLease, RunRecord, RunRow, WorkflowTaskLease,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::convert::{activity_lease_to_py, workflow_lease_to_py};
use crate::errors::guarded;
use crate::memory_store::{summary_tuple, SummaryTuple};

/// The columns of a row of `runs`, in the order `RunRecord.row()` gives and
/// `RunRecord.from_row` takes: `(run_key, version, workflow_id, run_id, workflow_type,
/// task_queue, status, history_length, task_state, task_ready_ms, task_token,
/// task_deadline_ms, task_failures, last_task_failure, cancel_requested, tail_start,
/// started_ms, closed_ms, dropped_signals)`.
const RUN_ROW_LENGTH: usize = 19;
/// Those of a row of `activities` (its run's key is beside it): `(scheduled_event_id, version,
/// activity_id, task_queue, activity_type, input, policy, schedule_to_close_ms,
/// schedule_to_start_ms, start_to_close_ms, heartbeat_ms, attempt, scheduled_ms, state,
/// ready_ms, token, started_ms, last_heartbeat_ms, heartbeat_details, last_failure,
/// next_deadline_ms)`; `next_deadline_ms` is for the store's index and is not read back.
const ACTIVITY_ROW_LENGTH: usize = 21;

/// Reads the items of a row tuple of `length` columns.
struct Columns<'a, 'py> {
    row: &'a Bound<'py, PyTuple>,
}

impl<'py> Columns<'_, 'py> {
    fn of<'a>(row: &'a Bound<'py, PyTuple>, length: usize) -> PyResult<Columns<'a, 'py>> {
        if row.len() != length {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "a row of {length} columns, not {}",
                row.len()
            )));
        }
        Ok(Columns { row })
    }

    fn get<T: for<'a> FromPyObject<'a, 'py>>(&self, index: usize) -> PyResult<T> {
        self.row.get_item(index)?.extract::<T>().map_err(Into::into)
    }

    fn bytes(&self, index: usize) -> PyResult<Vec<u8>> {
        Ok(self
            .row
            .get_item(index)?
            .cast::<PyBytes>()?
            .as_bytes()
            .to_vec())
    }

    fn optional_bytes(&self, index: usize) -> PyResult<Option<Vec<u8>>> {
        let item = self.row.get_item(index)?;
        if item.is_none() {
            return Ok(None);
        }
        Ok(Some(item.cast::<PyBytes>()?.as_bytes().to_vec()))
    }
}

#[pyclass(name = "RunRecord", module = "mainspring._core", frozen)]
#[derive(Clone)]
pub struct PyRunRecord {
    pub record: RunRecord,
}

#[pymethods]
impl PyRunRecord {
    /// A record from a row of `runs` (the layout of `row()`).
    #[staticmethod]
    fn from_row(py: Python<'_>, row: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let columns = Columns::of(row, RUN_ROW_LENGTH)?;
        let row = RunRow {
            run_key: columns.get(0)?,
            version: columns.get(1)?,
            workflow_id: columns.get(2)?,
            run_id: columns.get(3)?,
            workflow_type: columns.get(4)?,
            task_queue: columns.get(5)?,
            status: columns.get(6)?,
            history_length: columns.get(7)?,
            task_state: columns.get(8)?,
            task_ready_ms: columns.get(9)?,
            task_token: columns.get(10)?,
            task_deadline_ms: columns.get(11)?,
            task_failures: columns.get(12)?,
            last_task_failure: columns.get(13)?,
            cancel_requested: columns.get(14)?,
            tail_start: columns.get(15)?,
            started_ms: columns.get(16)?,
            closed_ms: columns.get(17)?,
            dropped_signals: columns.get(18)?,
        };
        let record = guarded(py, || RunRecord::from_row(row))?;
        Ok(PyRunRecord { record })
    }

    /// The row to store, in the column order of `from_row`.
    fn row<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let row = self.record.to_row();
        PyTuple::new(
            py,
            [
                row.run_key.into_bound_py_any(py)?,
                row.version.into_bound_py_any(py)?,
                row.workflow_id.into_bound_py_any(py)?,
                row.run_id.into_bound_py_any(py)?,
                row.workflow_type.into_bound_py_any(py)?,
                row.task_queue.into_bound_py_any(py)?,
                row.status.into_bound_py_any(py)?,
                row.history_length.into_bound_py_any(py)?,
                row.task_state.into_bound_py_any(py)?,
                row.task_ready_ms.into_bound_py_any(py)?,
                row.task_token.into_bound_py_any(py)?,
                row.task_deadline_ms.into_bound_py_any(py)?,
                row.task_failures.into_bound_py_any(py)?,
                row.last_task_failure.into_bound_py_any(py)?,
                row.cancel_requested.into_bound_py_any(py)?,
                row.tail_start.into_bound_py_any(py)?,
                row.started_ms.into_bound_py_any(py)?,
                row.closed_ms.into_bound_py_any(py)?,
                row.dropped_signals.into_bound_py_any(py)?,
            ],
        )
    }

    #[getter]
    fn key(&self) -> i64 {
        self.record.key
    }

    #[getter]
    fn version(&self) -> i64 {
        self.record.version
    }

    #[getter]
    fn workflow_id(&self) -> &str {
        &self.record.identity.workflow_id
    }

    #[getter]
    fn run_id(&self) -> &str {
        &self.record.identity.run_id
    }

    #[getter]
    fn task_queue(&self) -> &str {
        &self.record.identity.task_queue
    }

    #[getter]
    fn is_running(&self) -> bool {
        self.record.is_running()
    }

    #[getter]
    fn history_length(&self) -> u64 {
        self.record.history_length
    }

    #[getter]
    fn tail_start(&self) -> u64 {
        self.record.tail_start
    }

    /// `(run_key, workflow_id, run_id, workflow_type, history_length, token, tail_start,
    /// tail)` if the task is leased (the SQLite store's layout), with `tail` the events the
    /// caller's cached instance lacks.
    fn workflow_lease<'py>(
        &self,
        py: Python<'py>,
        tail: &[u8],
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        WorkflowTaskLease::of(&self.record)
            .map(|lease| workflow_lease_to_py(py, &lease, tail))
            .transpose()
    }

    /// `(run_key, workflow_id, run_id, workflow_type, task_queue, status, history_length,
    /// started_ms, closed_ms, last_task_failure)`: what `describe` reports.
    fn summary(&self) -> SummaryTuple {
        summary_tuple(RunSummary::of(&self.record))
    }
}

#[pyclass(name = "ActivityRecord", module = "mainspring._core", frozen)]
#[derive(Clone)]
pub struct PyActivityRecord {
    pub record: ActivityRecord,
}

#[pymethods]
impl PyActivityRecord {
    /// A record from a row of `activities` (the layout of `row()`).
    #[staticmethod]
    fn from_row(py: Python<'_>, row: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let columns = Columns::of(row, ACTIVITY_ROW_LENGTH)?;
        let row = ActivityRow {
            scheduled_event_id: columns.get(0)?,
            version: columns.get(1)?,
            activity_id: columns.get(2)?,
            task_queue: columns.get(3)?,
            activity_type: columns.get(4)?,
            input: columns.bytes(5)?,
            policy: columns.bytes(6)?,
            schedule_to_close_ms: columns.get(7)?,
            schedule_to_start_ms: columns.get(8)?,
            start_to_close_ms: columns.get(9)?,
            heartbeat_ms: columns.get(10)?,
            attempt: columns.get(11)?,
            scheduled_ms: columns.get(12)?,
            state: columns.get(13)?,
            ready_ms: columns.get(14)?,
            token: columns.get(15)?,
            started_ms: columns.get(16)?,
            last_heartbeat_ms: columns.get(17)?,
            heartbeat_details: columns.bytes(18)?,
            last_failure: columns.optional_bytes(19)?,
            next_deadline_ms: columns.get(20)?,
        };
        let record = guarded(py, || ActivityRecord::from_row(row))?;
        Ok(PyActivityRecord { record })
    }

    /// The row to store, in the column order of `from_row`.
    fn row<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let row = self.record.to_row();
        let bytes = |bytes: &[u8]| PyBytes::new(py, bytes).into_any();
        let last_failure = match &row.last_failure {
            Some(failure) => bytes(failure),
            None => py.None().into_bound(py),
        };
        PyTuple::new(
            py,
            [
                row.scheduled_event_id.into_bound_py_any(py)?,
                row.version.into_bound_py_any(py)?,
                row.activity_id.into_bound_py_any(py)?,
                row.task_queue.into_bound_py_any(py)?,
                row.activity_type.into_bound_py_any(py)?,
                bytes(&row.input),
                bytes(&row.policy),
                row.schedule_to_close_ms.into_bound_py_any(py)?,
                row.schedule_to_start_ms.into_bound_py_any(py)?,
                row.start_to_close_ms.into_bound_py_any(py)?,
                row.heartbeat_ms.into_bound_py_any(py)?,
                row.attempt.into_bound_py_any(py)?,
                row.scheduled_ms.into_bound_py_any(py)?,
                row.state.into_bound_py_any(py)?,
                row.ready_ms.into_bound_py_any(py)?,
                row.token.into_bound_py_any(py)?,
                row.started_ms.into_bound_py_any(py)?,
                row.last_heartbeat_ms.into_bound_py_any(py)?,
                bytes(&row.heartbeat_details),
                last_failure,
                row.next_deadline_ms.into_bound_py_any(py)?,
            ],
        )
    }

    #[getter]
    fn scheduled_event_id(&self) -> u64 {
        self.record.scheduled_event_id
    }

    /// The bytes of its payloads (input and heartbeat details): what keeping it costs.
    #[getter]
    fn payload_bytes(&self) -> usize {
        self.record.scheduled.input.0.len() + self.record.heartbeat_details.0.len()
    }

    #[getter]
    fn version(&self) -> i64 {
        self.record.version
    }

    #[getter]
    fn task_queue(&self) -> &str {
        &self.record.scheduled.options.task_queue
    }

    /// When a queued attempt may start (None while it runs).
    #[getter]
    fn ready_at_ms(&self) -> Option<i64> {
        self.record.ready_at_ms()
    }

    #[getter]
    fn next_deadline_ms(&self) -> Option<i64> {
        self.record.next_deadline_ms()
    }

    /// The running attempt's lease for a worker (the layout every store hands out), of run
    /// `run`; None unless it runs.
    fn lease<'py>(
        &self,
        py: Python<'py>,
        run: &PyRunRecord,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        ActivityTaskLease::of(run.record.key, &run.record.identity, &self.record)
            .map(|lease| activity_lease_to_py(py, &lease))
            .transpose()
    }
}
