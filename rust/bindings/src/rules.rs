//! The rules for stores written in Python (the next one is PostgreSQL on asyncpg): `Rules`
//! decides a whole group of operations in one call, each on the records its store loaded,
//! and returns what each decided — the plan to persist, fenced by the versions it names, and
//! what the caller gets back. Records cross as `RunRecord` / `ActivityRecord` objects, made
//! from and flattened into the rows of `mainspring_core::rules::rows` (the layout every
//! database store keeps), so no store maps a record its own way.

use std::collections::BTreeMap;

use mainspring_core::history::{decode_events, encode_event_row, join_event_rows, Event, Payload};
use mainspring_core::rules::operations::{
    self, Committed, Context, EagerActivities, EagerWorkflowTask,
};
use mainspring_core::rules::{
    ActivityRecord, ActivityRow, ActivityWrite, AttemptState, DecodedOutcome, Plan, RulesConfig,
    RunIdentity, RunRecord, RunRow, SplitMixTokens, TimerRecord, TimerWrite,
};
use mainspring_core::{CoreError, CoreResult};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3::IntoPyObjectExt;
use std::sync::Mutex;

use crate::convert::failure_from_py;
use crate::errors::{guarded, to_py_error};
use crate::memory_store::{summary_tuple, SummaryTuple};
use mainspring_core::memory::RunSummary;

/// The columns of a row of `runs`, in the order `RunRecord.row()` gives and
/// `RunRecord.from_row` takes: `(run_key, version, workflow_id, run_id, workflow_type,
/// task_queue, status, history_length, task_state, task_ready_ms, task_token,
/// task_deadline_ms, task_failures, last_task_failure, cancel_requested, tail_start,
/// started_ms, closed_ms)`.
const RUN_ROW_LENGTH: usize = 18;
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
        let record = &self.record;
        let Some(token) = record.lease_token() else {
            return Ok(None);
        };
        let identity = &record.identity;
        Ok(Some(
            (
                record.key,
                &identity.workflow_id,
                &identity.run_id,
                &identity.workflow_type,
                record.history_length,
                token,
                record.tail_start,
                PyBytes::new(py, tail),
            )
                .into_bound_py_any(py)?,
        ))
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
        activity_lease(py, &run.record, &self.record)
    }
}

/// `(run_key, scheduled_event_id, activity_id, token, workflow_id, run_id, activity_type,
/// input, attempt, heartbeat_details, scheduled_ms, started_ms, deadline_ms, heartbeat_ms)`
pub fn activity_lease<'py>(
    py: Python<'py>,
    run: &RunRecord,
    activity: &ActivityRecord,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let AttemptState::Running {
        token, started_ms, ..
    } = activity.state
    else {
        return Ok(None);
    };
    let scheduled = &activity.scheduled;
    Ok(Some(PyTuple::new(
        py,
        [
            run.key.into_bound_py_any(py)?,
            activity.scheduled_event_id.into_bound_py_any(py)?,
            scheduled.activity_id.as_str().into_bound_py_any(py)?,
            token.into_bound_py_any(py)?,
            run.identity.workflow_id.as_str().into_bound_py_any(py)?,
            run.identity.run_id.as_str().into_bound_py_any(py)?,
            scheduled.activity_type.as_str().into_bound_py_any(py)?,
            PyBytes::new(py, &scheduled.input.0).into_any(),
            activity.attempt.into_bound_py_any(py)?,
            PyBytes::new(py, &activity.heartbeat_details.0).into_any(),
            activity.scheduled_ms.into_bound_py_any(py)?,
            started_ms.into_bound_py_any(py)?,
            activity.lease_deadline_ms().into_bound_py_any(py)?,
            scheduled.options.heartbeat_ms.into_bound_py_any(py)?,
        ],
    )?))
}

/// What a request asks, with the records it was loaded with.
#[derive(Clone)]
enum Asked {
    StartWorkflow {
        identity: RunIdentity,
        input: Vec<u8>,
        eager_lease_ms: Option<u64>,
    },
    StartWorkflowWithFirstTask {
        started_row: Vec<u8>,
        outcome: Vec<u8>,
        eager: Option<(String, usize)>,
    },
    LeaseWorkflowTask {
        lease_ms: u64,
    },
    CompleteWorkflowTask {
        token: i64,
        outcome: Option<Vec<u8>>,
        leased_length: u64,
        eager: Option<(String, usize)>,
    },
    FailWorkflowTask {
        token: i64,
        message: String,
    },
    CancelActivity,
    SignalWorkflow {
        signal_name: String,
        input: Vec<u8>,
    },
    RequestCancelWorkflow {
        reason: String,
    },
    TerminateWorkflow {
        reason: String,
    },
    LeaseActivityTask,
    CompleteActivityTask {
        token: i64,
        result: Vec<u8>,
        eager: Option<(String, u64)>,
    },
    CompleteActivityWithWorkflowTask {
        token: i64,
        result_row: Vec<u8>,
        expected_length: u64,
        outcome: Vec<u8>,
        eager: Option<(String, usize)>,
    },
    FailActivityTask {
        token: i64,
        failure: mainspring_core::history::Failure,
    },
    HeartbeatActivityTask {
        token: i64,
        details: Vec<u8>,
    },
    FireTimer {
        timer: TimerRecord,
    },
    ExpireWorkflowTaskLease,
    ApplyActivityDeadline,
}

#[pyclass(name = "RuleRequest", module = "mainspring._core", frozen)]
pub struct PyRuleRequest {
    asked: Asked,
    run: Option<RunRecord>,
    activity: Option<ActivityRecord>,
}

fn request(
    asked: Asked,
    run: Option<&PyRunRecord>,
    activity: Option<&PyActivityRecord>,
) -> PyRuleRequest {
    PyRuleRequest {
        asked,
        run: run.map(|run| run.record.clone()),
        activity: activity.map(|activity| activity.record.clone()),
    }
}

fn eager_slots(queue: Option<String>, slots: usize) -> Option<(String, usize)> {
    queue.map(|queue| (queue, slots))
}

// One constructor per operation of `mainspring_core::rules::operations`, with the records it
// decides on (loaded by the store in the transaction that will persist the plan).
#[allow(clippy::too_many_arguments)]
#[pymethods]
impl PyRuleRequest {
    #[staticmethod]
    #[pyo3(signature = (workflow_id, run_id, workflow_type, task_queue, input, eager_lease_ms))]
    fn start_workflow(
        workflow_id: String,
        run_id: String,
        workflow_type: String,
        task_queue: String,
        input: &[u8],
        eager_lease_ms: Option<u64>,
    ) -> Self {
        let identity = RunIdentity {
            workflow_id,
            run_id,
            workflow_type,
            task_queue,
        };
        request(
            Asked::StartWorkflow {
                identity,
                input: input.to_vec(),
                eager_lease_ms,
            },
            None,
            None,
        )
    }

    #[staticmethod]
    #[pyo3(signature = (started_row, outcome, eager_queue, eager_slots))]
    fn start_workflow_with_first_task(
        started_row: &[u8],
        outcome: &[u8],
        eager_queue: Option<String>,
        eager_slots: usize,
    ) -> Self {
        request(
            Asked::StartWorkflowWithFirstTask {
                started_row: started_row.to_vec(),
                outcome: outcome.to_vec(),
                eager: self::eager_slots(eager_queue, eager_slots),
            },
            None,
            None,
        )
    }

    #[staticmethod]
    fn lease_workflow_task(run: &PyRunRecord, lease_ms: u64) -> Self {
        request(Asked::LeaseWorkflowTask { lease_ms }, Some(run), None)
    }

    #[staticmethod]
    #[pyo3(signature = (run, token, outcome, leased_length, eager_queue, eager_slots))]
    fn complete_workflow_task(
        run: &PyRunRecord,
        token: i64,
        outcome: Option<&[u8]>,
        leased_length: u64,
        eager_queue: Option<String>,
        eager_slots: usize,
    ) -> Self {
        request(
            Asked::CompleteWorkflowTask {
                token,
                outcome: outcome.map(<[u8]>::to_vec),
                leased_length,
                eager: self::eager_slots(eager_queue, eager_slots),
            },
            Some(run),
            None,
        )
    }

    #[staticmethod]
    fn fail_workflow_task(run: &PyRunRecord, token: i64, message: String) -> Self {
        request(Asked::FailWorkflowTask { token, message }, Some(run), None)
    }

    /// A cancellation a commit named (`Decision.activities_to_cancel`), on the run as that
    /// commit left it.
    #[staticmethod]
    fn cancel_activity(run: &PyRunRecord, activity: &PyActivityRecord) -> Self {
        request(Asked::CancelActivity, Some(run), Some(activity))
    }

    #[staticmethod]
    fn signal_workflow(run: &PyRunRecord, signal_name: String, input: &[u8]) -> Self {
        request(
            Asked::SignalWorkflow {
                signal_name,
                input: input.to_vec(),
            },
            Some(run),
            None,
        )
    }

    #[staticmethod]
    fn request_cancel_workflow(run: &PyRunRecord, reason: String) -> Self {
        request(Asked::RequestCancelWorkflow { reason }, Some(run), None)
    }

    #[staticmethod]
    fn terminate_workflow(run: &PyRunRecord, reason: String) -> Self {
        request(Asked::TerminateWorkflow { reason }, Some(run), None)
    }

    #[staticmethod]
    fn lease_activity_task(run: &PyRunRecord, activity: &PyActivityRecord) -> Self {
        request(Asked::LeaseActivityTask, Some(run), Some(activity))
    }

    #[staticmethod]
    #[pyo3(signature = (run, activity, token, result, eager_queue, eager_lease_ms))]
    fn complete_activity_task(
        run: &PyRunRecord,
        activity: &PyActivityRecord,
        token: i64,
        result: &[u8],
        eager_queue: Option<String>,
        eager_lease_ms: u64,
    ) -> Self {
        request(
            Asked::CompleteActivityTask {
                token,
                result: result.to_vec(),
                eager: eager_queue.map(|queue| (queue, eager_lease_ms)),
            },
            Some(run),
            Some(activity),
        )
    }

    #[staticmethod]
    #[pyo3(signature = (run, activity, token, result_row, expected_length, outcome, eager_queue, eager_slots))]
    fn complete_activity_with_workflow_task(
        run: &PyRunRecord,
        activity: &PyActivityRecord,
        token: i64,
        result_row: &[u8],
        expected_length: u64,
        outcome: &[u8],
        eager_queue: Option<String>,
        eager_slots: usize,
    ) -> Self {
        request(
            Asked::CompleteActivityWithWorkflowTask {
                token,
                result_row: result_row.to_vec(),
                expected_length,
                outcome: outcome.to_vec(),
                eager: self::eager_slots(eager_queue, eager_slots),
            },
            Some(run),
            Some(activity),
        )
    }

    #[staticmethod]
    fn fail_activity_task(
        run: &PyRunRecord,
        activity: &PyActivityRecord,
        token: i64,
        failure: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let failure = failure_from_py(failure)?;
        Ok(request(
            Asked::FailActivityTask { token, failure },
            Some(run),
            Some(activity),
        ))
    }

    #[staticmethod]
    fn heartbeat_activity_task(
        run: &PyRunRecord,
        activity: &PyActivityRecord,
        token: i64,
        details: &[u8],
    ) -> Self {
        request(
            Asked::HeartbeatActivityTask {
                token,
                details: details.to_vec(),
            },
            Some(run),
            Some(activity),
        )
    }

    #[staticmethod]
    fn fire_timer(run: &PyRunRecord, started_event_id: u64, fire_at_ms: i64) -> Self {
        let timer = TimerRecord {
            started_event_id,
            fire_at_ms,
        };
        request(Asked::FireTimer { timer }, Some(run), None)
    }

    #[staticmethod]
    fn expire_workflow_task_lease(run: &PyRunRecord) -> Self {
        request(Asked::ExpireWorkflowTaskLease, Some(run), None)
    }

    #[staticmethod]
    fn apply_activity_deadline(run: &PyRunRecord, activity: &PyActivityRecord) -> Self {
        request(Asked::ApplyActivityDeadline, Some(run), Some(activity))
    }
}

/// What one request decided: the plan to persist (in one transaction with the rest of its
/// group, in order: run, events, activities, timers, then dropping a closed run's pending
/// work) and what the caller gets back.
#[pyclass(name = "Decision", module = "mainspring._core", frozen)]
pub struct PyDecision {
    plan: Plan,
    committed: Option<Committed>,
    /// The workflow task was leased to the caller (eager dispatch, or a lease request).
    leased: bool,
    /// For a fused commit: whether it fused (else only the result was recorded).
    fused: bool,
}

#[pymethods]
impl PyDecision {
    /// The run's record after the plan (None: unchanged).
    #[getter]
    fn run(&self) -> Option<PyRunRecord> {
        self.plan.run.as_ref().map(|change| PyRunRecord {
            record: change.record.clone(),
        })
    }

    /// The version the run was loaded at: the compare-and-set of its write (None: the run is
    /// new, or unchanged).
    #[getter]
    fn expected_version(&self) -> Option<i64> {
        self.plan
            .run
            .as_ref()
            .and_then(|change| change.expected_version)
    }

    /// Whether the run is new: insert it open (so the unique index over open runs fences
    /// it), then write its record.
    #[getter]
    fn inserts_run(&self) -> bool {
        self.plan
            .run
            .as_ref()
            .is_some_and(|change| change.expected_version.is_none())
    }

    /// `[(event_id, kind, row), ...]`, rows as `encode_inbound_row` makes them.
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for event in &self.plan.events {
            list.append((
                event.event_id,
                event.attributes.kind(),
                PyBytes::new(py, &encode_event_row(event)),
            ))?;
        }
        Ok(list)
    }

    /// `[(write, scheduled_event_id, expected_version | None, record | None), ...]`, `write`
    /// being "insert", "update" or "delete".
    #[getter]
    fn activities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for write in &self.plan.activities {
            let item = match write {
                ActivityWrite::Insert(record) => (
                    "insert",
                    record.scheduled_event_id,
                    None,
                    Some(PyActivityRecord {
                        record: record.clone(),
                    }),
                ),
                ActivityWrite::Update {
                    expected_version,
                    record,
                } => (
                    "update",
                    record.scheduled_event_id,
                    Some(*expected_version),
                    Some(PyActivityRecord {
                        record: record.clone(),
                    }),
                ),
                ActivityWrite::Delete {
                    scheduled_event_id,
                    expected_version,
                } => ("delete", *scheduled_event_id, Some(*expected_version), None),
            };
            list.append(item.into_bound_py_any(py)?)?;
        }
        Ok(list)
    }

    /// `[(write, started_event_id, fire_at_ms | None), ...]`: "insert"; "cancel" (delete it
    /// if it is there); "fire" (delete it, fenced: it must be there, or another writer fired
    /// it first and nothing may be written).
    #[getter]
    fn timers(&self) -> Vec<(&'static str, u64, Option<i64>)> {
        self.plan
            .timers
            .iter()
            .map(|write| match write {
                TimerWrite::Insert(timer) => {
                    ("insert", timer.started_event_id, Some(timer.fire_at_ms))
                }
                TimerWrite::Cancel { started_event_id } => ("cancel", *started_event_id, None),
                TimerWrite::Fire { started_event_id } => ("fire", *started_event_id, None),
            })
            .collect()
    }

    /// The run closed: delete every activity and timer it still has, after the writes above.
    #[getter]
    fn drop_pending_work(&self) -> bool {
        self.plan.drop_pending_work
    }

    /// Nothing to persist.
    #[getter]
    fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// Whether persisting this leaves pollers something to act on.
    #[getter]
    fn wakes_pollers(&self) -> bool {
        self.plan.wakes_pollers()
    }

    /// The run's workflow task was leased to the caller.
    #[getter]
    fn leased(&self) -> bool {
        self.leased
    }

    /// A fused commit fused (false: only the activity's result was recorded).
    #[getter]
    fn fused(&self) -> bool {
        self.fused
    }

    /// A commit closed the run (its closing event is the last of `events`).
    #[getter]
    fn closed(&self) -> bool {
        self.committed
            .as_ref()
            .is_some_and(|committed| committed.closed)
    }

    /// The scheduled event ids of the activities a commit cancels: load each still open and
    /// decide `RuleRequest.cancel_activity` on `run`, in the same transaction, in order.
    #[getter]
    fn activities_to_cancel(&self) -> Vec<u64> {
        self.committed
            .as_ref()
            .map(|committed| committed.activities_to_cancel.clone())
            .unwrap_or_default()
    }

    /// Activities a commit scheduled that were recorded already leased to the caller.
    #[getter]
    fn leased_activities(&self) -> Vec<PyActivityRecord> {
        self.committed
            .as_ref()
            .map(|committed| {
                committed
                    .leased_activities
                    .iter()
                    .map(|record| PyActivityRecord {
                        record: record.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A commit's own events (boundary to last command), encoded; None when it had none.
    fn task_events<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let committed = self.committed.as_ref()?;
        let range = committed.first_event_id..=committed.last_event_id;
        let rows: Vec<Vec<u8>> = self
            .plan
            .events
            .iter()
            .filter(|event| range.contains(&event.event_id))
            .map(encode_event_row)
            .collect();
        (!rows.is_empty()).then(|| PyBytes::new(py, &join_event_rows(&rows)))
    }

    /// The history length after a commit's own events.
    #[getter]
    fn task_history_length(&self) -> Option<u64> {
        self.committed
            .as_ref()
            .map(|committed| committed.last_event_id)
    }
}

/// The rules with a store's settings and its token source.
#[pyclass(name = "Rules", module = "mainspring._core", frozen)]
pub struct PyRules {
    config: RulesConfig,
    tokens: Mutex<SplitMixTokens>,
}

/// The records decided so far in one batch, each with the version it was decided on. A later
/// request that loaded that same version decides on what the earlier one left (its write then
/// names the version the earlier one wrote, and holds only if that write did: versions are
/// unique); one that loaded another version decides on what it loaded. A rule that refuses a
/// request decided on such a chained state is reported as a conflict, not as the refusal: the
/// state may never be stored, so the caller decides again on fresh records.
#[derive(Default)]
struct Chain {
    runs: BTreeMap<i64, (i64, RunRecord)>,
    activities: BTreeMap<(i64, u64), (i64, Option<ActivityRecord>)>,
    /// Whether the request being decided used a chained state.
    chained: bool,
}

impl Chain {
    fn run(&mut self, loaded: Option<RunRecord>) -> CoreResult<RunRecord> {
        let loaded =
            loaded.ok_or_else(|| CoreError::InvalidCommand("this request needs its run".into()))?;
        match self.runs.get(&loaded.key) {
            Some((decided_on, record)) if *decided_on == loaded.version => {
                self.chained = true;
                Ok(record.clone())
            }
            _ => Ok(loaded),
        }
    }

    fn activity(
        &mut self,
        run_key: i64,
        loaded: Option<ActivityRecord>,
    ) -> CoreResult<ActivityRecord> {
        let loaded = loaded
            .ok_or_else(|| CoreError::InvalidCommand("this request needs its activity".into()))?;
        match self.activities.get(&(run_key, loaded.scheduled_event_id)) {
            Some((decided_on, record)) if *decided_on == loaded.version => {
                self.chained = true;
                record.clone().ok_or_else(|| {
                    CoreError::StaleTask(format!("activity {} is over", loaded.scheduled_event_id))
                })
            }
            _ => Ok(loaded),
        }
    }

    fn remember(&mut self, run_key: i64, plan: &Plan) {
        if let Some(change) = &plan.run {
            if let (Some(decided_on), true) = (change.expected_version, run_key != 0) {
                self.runs
                    .insert(run_key, (decided_on, change.record.clone()));
            }
        }
        for write in &plan.activities {
            match write {
                ActivityWrite::Update {
                    expected_version,
                    record,
                } => {
                    self.activities.insert(
                        (run_key, record.scheduled_event_id),
                        (*expected_version, Some(record.clone())),
                    );
                }
                ActivityWrite::Delete {
                    scheduled_event_id,
                    expected_version,
                } => {
                    self.activities
                        .insert((run_key, *scheduled_event_id), (*expected_version, None));
                }
                ActivityWrite::Insert(_) => {}
            }
        }
    }
}

fn one_event(row: &[u8]) -> CoreResult<Event> {
    let mut events = decode_events(&join_event_rows(&[row]))?;
    match (events.pop(), events.is_empty()) {
        (Some(event), true) => Ok(event),
        _ => Err(CoreError::InvalidCommand(
            "expected one encoded event".into(),
        )),
    }
}

fn eager_activities(eager: &Option<(String, usize)>) -> Option<EagerActivities<'_>> {
    eager.as_ref().map(|(task_queue, slots)| EagerActivities {
        task_queue,
        slots: *slots,
    })
}

fn decide_one(
    context: &mut Context<'_>,
    chain: &mut Chain,
    request: &PyRuleRequest,
) -> CoreResult<PyDecision> {
    chain.chained = false;
    match decide_on(context, chain, request) {
        Err(CoreError::StaleTask(_) | CoreError::WorkflowNotRunning(_)) if chain.chained => {
            Err(CoreError::Conflict(
                "decided on a state an earlier request of the group left, which may not be \
                 stored: decide again on fresh records"
                    .into(),
            ))
        }
        outcome => outcome,
    }
}

fn decide_on(
    context: &mut Context<'_>,
    chain: &mut Chain,
    request: &PyRuleRequest,
) -> CoreResult<PyDecision> {
    let mut decision = PyDecision {
        plan: Plan::default(),
        committed: None,
        leased: false,
        fused: false,
    };
    let run_of = |chain: &mut Chain| chain.run(request.run.clone());
    match &request.asked {
        Asked::StartWorkflow {
            identity,
            input,
            eager_lease_ms,
        } => {
            let eager = eager_lease_ms.map(|lease_ms| EagerWorkflowTask {
                task_queue: &identity.task_queue,
                lease_ms,
            });
            decision.plan = operations::start_workflow(
                context,
                identity.clone(),
                Payload(input.clone()),
                eager,
            );
            decision.leased = decision.plan.record().lease_token().is_some();
        }
        Asked::StartWorkflowWithFirstTask {
            started_row,
            outcome,
            eager,
        } => {
            let (plan, committed) = operations::start_workflow_with_first_task(
                context,
                one_event(started_row)?,
                DecodedOutcome::decode(outcome)?,
                eager_activities(eager),
            )?;
            decision.plan = plan;
            decision.committed = Some(committed);
        }
        Asked::LeaseWorkflowTask { lease_ms } => {
            decision.plan = operations::lease_workflow_task(context, run_of(chain)?, *lease_ms)?;
            decision.leased = true;
        }
        Asked::CompleteWorkflowTask {
            token,
            outcome,
            leased_length,
            eager,
        } => {
            let outcome = outcome.as_deref().map(DecodedOutcome::decode).transpose()?;
            let (plan, committed) = operations::complete_workflow_task(
                context,
                run_of(chain)?,
                *token,
                outcome,
                *leased_length,
                eager_activities(eager),
            )?;
            decision.plan = plan;
            decision.committed = Some(committed);
        }
        Asked::FailWorkflowTask { token, message } => {
            decision.plan =
                operations::fail_workflow_task(context, run_of(chain)?, *token, message)?;
        }
        Asked::CancelActivity => {
            let run = run_of(chain)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            let mut plan = Plan::update(run, context.tokens);
            operations::cancel_activity(context, &mut plan, activity);
            decision.plan = plan;
        }
        Asked::SignalWorkflow { signal_name, input } => {
            decision.plan = operations::signal_workflow(
                context,
                run_of(chain)?,
                signal_name,
                Payload(input.clone()),
            )?;
        }
        Asked::RequestCancelWorkflow { reason } => {
            decision.plan = operations::request_cancel_workflow(context, run_of(chain)?, reason)?;
        }
        Asked::TerminateWorkflow { reason } => {
            decision.plan = operations::terminate_workflow(context, run_of(chain)?, reason)?;
        }
        Asked::LeaseActivityTask => {
            let run = run_of(chain)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            decision.plan = operations::lease_activity_task(context, activity)?;
        }
        Asked::CompleteActivityTask {
            token,
            result,
            eager,
        } => {
            let run = run_of(chain)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            let eager = eager
                .as_ref()
                .map(|(task_queue, lease_ms)| EagerWorkflowTask {
                    task_queue,
                    lease_ms: *lease_ms,
                });
            let (plan, leased) = operations::complete_activity_task(
                context,
                run,
                activity,
                *token,
                Payload(result.clone()),
                eager,
            )?;
            decision.plan = plan;
            decision.leased = leased;
        }
        Asked::CompleteActivityWithWorkflowTask {
            token,
            result_row,
            expected_length,
            outcome,
            eager,
        } => {
            let run = run_of(chain)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            let (plan, committed) = operations::complete_activity_with_workflow_task(
                context,
                run,
                activity,
                *token,
                one_event(result_row)?,
                *expected_length,
                DecodedOutcome::decode(outcome)?,
                eager_activities(eager),
            )?;
            decision.plan = plan;
            decision.fused = committed.is_some();
            decision.committed = committed;
        }
        Asked::FailActivityTask { token, failure } => {
            let run = run_of(chain)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            decision.plan =
                operations::fail_activity_task(context, run, activity, *token, failure.clone())?;
        }
        Asked::HeartbeatActivityTask { token, details } => {
            let run = run_of(chain)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            decision.plan = operations::heartbeat_activity_task(
                context,
                activity,
                *token,
                Payload(details.clone()),
            )?;
        }
        Asked::FireTimer { timer } => {
            decision.plan = operations::fire_timer(context, run_of(chain)?, *timer);
        }
        Asked::ExpireWorkflowTaskLease => {
            decision.plan = operations::expire_workflow_task_lease(context, run_of(chain)?);
        }
        Asked::ApplyActivityDeadline => {
            let run = run_of(chain)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            decision.plan = operations::apply_activity_deadline(context, run, activity)?;
        }
    }
    let run_key = request.run.as_ref().map_or(0, |run| run.key);
    chain.remember(run_key, &decision.plan);
    Ok(decision)
}

#[pymethods]
impl PyRules {
    /// `token_seed`: where this store's fencing tokens start (draw it from the OS, e.g.
    /// `secrets.randbits(64)`, so processes sharing a database draw different tokens).
    #[new]
    #[pyo3(signature = (token_seed, workflow_task_retry_initial_ms = 1_000, workflow_task_retry_maximum_ms = 60_000))]
    fn new(
        token_seed: u64,
        workflow_task_retry_initial_ms: u64,
        workflow_task_retry_maximum_ms: u64,
    ) -> Self {
        PyRules {
            config: RulesConfig {
                workflow_task_retry_initial_ms,
                workflow_task_retry_maximum_ms,
            },
            tokens: Mutex::new(SplitMixTokens::from_seed(token_seed)),
        }
    }

    /// Decides a group of requests at `now_ms`, in order, in one call: `[Decision |
    /// exception, ...]`. A request that breaks a rule gets its typed exception (and decides
    /// nothing); the others stand. A request on a run (or an activity) an earlier one
    /// changed decides on what that one left, and its write names the version that one wrote:
    /// versions are unique, so it holds only if the earlier write did (persist in order).
    fn decide<'py>(
        &self,
        py: Python<'py>,
        now_ms: i64,
        requests: Vec<Bound<'py, PyRuleRequest>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let outcomes = guarded(py, || {
            let mut tokens = self
                .tokens
                .lock()
                .map_err(|_| CoreError::InvalidCommand("the rules' tokens are poisoned".into()))?;
            let mut context = Context {
                now_ms,
                config: &self.config,
                tokens: &mut *tokens,
            };
            let mut chain = Chain::default();
            Ok(requests
                .iter()
                .map(|request| decide_one(&mut context, &mut chain, request.get()))
                .collect::<Vec<_>>())
        })?;
        let list = PyList::empty(py);
        for outcome in outcomes {
            match outcome {
                Ok(decision) => list.append(Bound::new(py, decision)?)?,
                Err(error) => list.append(to_py_error(py, error).into_value(py))?,
            }
        }
        Ok(list)
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PyRules>()?;
    module.add_class::<PyRuleRequest>()?;
    module.add_class::<PyDecision>()?;
    module.add_class::<PyRunRecord>()?;
    module.add_class::<PyActivityRecord>()?;
    Ok(())
}
