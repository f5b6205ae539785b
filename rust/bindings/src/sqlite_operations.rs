//! `SqliteOperation`: one typed operation of the SQLite store, made by one constructor per
//! operation (no names to look up, arguments checked when it is made), and what each gives
//! back across the boundary. The results are the tuples the Python storage hands out; their
//! layouts are in `_core.pyi` and the typed wrappers of `storage/_sqlite_requests.py`.

use std::sync::Arc;

use mainspring_sqlite::{
    Committed, Eager, HeldAttempt, NewRun, Operation, Output, Request, RunSummary, SlotPool,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use pyo3::IntoPyObjectExt;

use crate::convert::{activity_lease_to_py, failure_from_py, workflow_lease_to_py};

#[pyclass(name = "SqliteOperation", module = "mainspring._core", frozen)]
pub struct PySqliteOperation {
    pub request: Request,
}

fn made(now: i64, operation: Operation) -> PySqliteOperation {
    PySqliteOperation {
        request: Request { now, operation },
    }
}

/// Where a commit may lease attempts to its caller. With `pool`, it leases them only into
/// slots it takes from the caller's pool as it runs (see `PySlotPool`).
fn eager(queue: Option<String>, slots: usize, pool: Option<PyRef<'_, PySlotPool>>) -> Eager {
    Eager {
        queue,
        slots,
        pool: pool.map(|pool| Arc::clone(&pool.pool)),
    }
}

/// A worker's activity slots, shared with the store's thread (see `mainspring_sqlite::SlotPool`):
/// an operation given it takes a slot for each attempt it leases to the caller, as it runs.
#[pyclass(name = "SlotPool", module = "mainspring._core", frozen)]
pub struct PySlotPool {
    pub pool: Arc<SlotPool>,
}

#[pymethods]
impl PySlotPool {
    #[new]
    fn new(free: usize) -> Self {
        PySlotPool {
            pool: Arc::new(SlotPool::new(free)),
        }
    }

    #[getter]
    fn free(&self) -> usize {
        self.pool.free()
    }

    /// Takes up to `wanted` free slots; returns how many.
    fn take(&self, wanted: usize) -> usize {
        self.pool.take(wanted)
    }

    fn give(&self, slots: usize) {
        self.pool.give(slots)
    }

    /// How many takes have got fewer slots than they wanted, ever.
    #[getter]
    fn short_takes(&self) -> u64 {
        self.pool.short_takes()
    }

    /// Whether a take got fewer slots than it wanted since the last call (and clears it).
    fn was_short(&self) -> bool {
        self.pool.was_short()
    }
}

fn new_run(
    workflow_id: String,
    run_id: String,
    workflow_type: String,
    task_queue: String,
) -> NewRun {
    NewRun {
        workflow_id,
        run_id,
        workflow_type,
        task_queue,
    }
}

fn held(run_key: i64, scheduled_event_id: u64, token: i64) -> HeldAttempt {
    HeldAttempt {
        run_key,
        scheduled_event_id,
        token,
    }
}

// One constructor per operation; their arguments are the operation's, in the order of
// `Operation` (see `mainspring-sqlite`). Most take many: bundling them would add a type each.
#[allow(clippy::too_many_arguments)]
#[pymethods]
impl PySqliteOperation {
    /// Whether the operation only reads.
    #[getter]
    fn read_only(&self) -> bool {
        self.request.operation.read_only()
    }

    #[staticmethod]
    #[pyo3(signature = (now, workflow_id, run_id, workflow_type, task_queue, input, eager_lease_ms))]
    fn start_workflow(
        now: i64,
        workflow_id: String,
        run_id: String,
        workflow_type: String,
        task_queue: String,
        input: &[u8],
        eager_lease_ms: Option<i64>,
    ) -> Self {
        made(
            now,
            Operation::StartWorkflow {
                run: new_run(workflow_id, run_id, workflow_type, task_queue),
                input: input.to_vec(),
                eager_lease_ms,
            },
        )
    }

    #[staticmethod]
    #[pyo3(signature = (now, workflow_id, run_id, workflow_type, task_queue, started_row, outcome, eager_queue, eager_slots, pool = None))]
    fn start_workflow_with_first_task(
        now: i64,
        workflow_id: String,
        run_id: String,
        workflow_type: String,
        task_queue: String,
        started_row: &[u8],
        outcome: &[u8],
        eager_queue: Option<String>,
        eager_slots: usize,
        pool: Option<PyRef<'_, PySlotPool>>,
    ) -> Self {
        made(
            now,
            Operation::StartWorkflowWithFirstTask {
                run: new_run(workflow_id, run_id, workflow_type, task_queue),
                started_row: started_row.to_vec(),
                outcome: outcome.to_vec(),
                eager: eager(eager_queue, eager_slots, pool),
            },
        )
    }

    #[staticmethod]
    #[pyo3(signature = (now, run_key, token, outcome, leased_length, eager_queue, eager_slots, pool = None))]
    fn complete_workflow_task(
        now: i64,
        run_key: i64,
        token: i64,
        outcome: Option<&[u8]>,
        leased_length: i64,
        eager_queue: Option<String>,
        eager_slots: usize,
        pool: Option<PyRef<'_, PySlotPool>>,
    ) -> Self {
        made(
            now,
            Operation::CompleteWorkflowTask {
                run_key,
                token,
                outcome: outcome.map(<[u8]>::to_vec),
                leased_length,
                eager: eager(eager_queue, eager_slots, pool),
            },
        )
    }

    #[staticmethod]
    fn fail_workflow_task(now: i64, run_key: i64, token: i64, message: String) -> Self {
        made(
            now,
            Operation::FailWorkflowTask {
                run_key,
                token,
                message,
            },
        )
    }

    #[staticmethod]
    #[pyo3(signature = (now, run_key, scheduled_event_id, token, result_row, expected_length, outcome, eager_queue, eager_slots, pool = None))]
    fn complete_activity_with_workflow_task(
        now: i64,
        run_key: i64,
        scheduled_event_id: u64,
        token: i64,
        result_row: &[u8],
        expected_length: i64,
        outcome: &[u8],
        eager_queue: Option<String>,
        eager_slots: usize,
        pool: Option<PyRef<'_, PySlotPool>>,
    ) -> Self {
        made(
            now,
            Operation::CompleteActivityWithWorkflowTask {
                attempt: held(run_key, scheduled_event_id, token),
                result_row: result_row.to_vec(),
                expected_length,
                outcome: outcome.to_vec(),
                eager: eager(eager_queue, eager_slots, pool),
            },
        )
    }

    #[staticmethod]
    #[pyo3(signature = (now, run_key, scheduled_event_id, token, result, eager_queue, eager_lease_ms))]
    fn complete_activity_task(
        now: i64,
        run_key: i64,
        scheduled_event_id: u64,
        token: i64,
        result: &[u8],
        eager_queue: Option<String>,
        eager_lease_ms: i64,
    ) -> Self {
        made(
            now,
            Operation::CompleteActivityTask {
                attempt: held(run_key, scheduled_event_id, token),
                result: result.to_vec(),
                eager_queue,
                eager_lease_ms,
            },
        )
    }

    #[staticmethod]
    fn fail_activity_task(
        now: i64,
        run_key: i64,
        scheduled_event_id: u64,
        token: i64,
        failure: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        Ok(made(
            now,
            Operation::FailActivityTask {
                attempt: held(run_key, scheduled_event_id, token),
                failure: failure_from_py(failure)?,
            },
        ))
    }

    #[staticmethod]
    fn heartbeat_activity_task(
        now: i64,
        run_key: i64,
        scheduled_event_id: u64,
        token: i64,
        details: &[u8],
    ) -> Self {
        made(
            now,
            Operation::HeartbeatActivityTask {
                attempt: held(run_key, scheduled_event_id, token),
                details: details.to_vec(),
            },
        )
    }

    #[staticmethod]
    fn signal_workflow(now: i64, workflow_id: String, signal_name: String, input: &[u8]) -> Self {
        made(
            now,
            Operation::SignalWorkflow {
                workflow_id,
                signal_name,
                input: input.to_vec(),
            },
        )
    }

    #[staticmethod]
    fn request_cancel_workflow(now: i64, workflow_id: String, reason: String) -> Self {
        made(
            now,
            Operation::RequestCancelWorkflow {
                workflow_id,
                reason,
            },
        )
    }

    #[staticmethod]
    fn terminate_workflow(now: i64, workflow_id: String, reason: String) -> Self {
        made(
            now,
            Operation::TerminateWorkflow {
                workflow_id,
                reason,
            },
        )
    }

    #[staticmethod]
    fn poll_workflow_tasks(now: i64, task_queue: String, lease_ms: i64, max_tasks: i64) -> Self {
        made(
            now,
            Operation::PollWorkflowTasks {
                task_queue,
                lease_ms,
                max_tasks,
            },
        )
    }

    /// With `pool`, leases only into slots it takes from the caller's pool as it runs.
    #[staticmethod]
    #[pyo3(signature = (now, task_queue, max_tasks, pool = None))]
    fn poll_activity_tasks(
        now: i64,
        task_queue: String,
        max_tasks: i64,
        pool: Option<PyRef<'_, PySlotPool>>,
    ) -> Self {
        made(
            now,
            Operation::PollActivityTasks {
                task_queue,
                max_tasks,
                pool: pool.map(|pool| Arc::clone(&pool.pool)),
            },
        )
    }

    #[staticmethod]
    fn describe_workflow(now: i64, workflow_id: String) -> Self {
        made(now, Operation::DescribeWorkflow { workflow_id })
    }

    #[staticmethod]
    #[pyo3(signature = (now, after_run_key, page_size, status=None, workflow_type=None))]
    fn list_workflows(
        now: i64,
        after_run_key: Option<i64>,
        page_size: i64,
        status: Option<String>,
        workflow_type: Option<String>,
    ) -> Self {
        made(
            now,
            Operation::ListWorkflows {
                after_run_key,
                page_size,
                status,
                workflow_type,
            },
        )
    }

    #[staticmethod]
    fn read_history(now: i64, run_id: String, from_event_id: i64) -> Self {
        made(
            now,
            Operation::ReadHistory {
                run_id,
                from_event_id,
            },
        )
    }

    #[staticmethod]
    fn closing_event(now: i64, run_id: String) -> Self {
        made(now, Operation::ClosingEvent { run_id })
    }

    #[staticmethod]
    fn closing_events(now: i64, run_ids: Vec<String>) -> Self {
        made(now, Operation::ClosingEvents { run_ids })
    }

    #[staticmethod]
    fn submit_query(now: i64, workflow_id: String, name: String, input: &[u8]) -> Self {
        made(
            now,
            Operation::SubmitQuery {
                workflow_id,
                name,
                input: input.to_vec(),
            },
        )
    }

    #[staticmethod]
    fn take_query(now: i64, task_queue: String) -> Self {
        made(now, Operation::TakeQuery { task_queue })
    }

    #[staticmethod]
    #[pyo3(signature = (now, query_id, result, error))]
    fn answer_query(now: i64, query_id: i64, result: Option<&[u8]>, error: Option<String>) -> Self {
        made(
            now,
            Operation::AnswerQuery {
                query_id,
                result: result.map(<[u8]>::to_vec),
                error,
            },
        )
    }

    #[staticmethod]
    fn read_answer(now: i64, query_id: i64, give_up: bool) -> Self {
        made(now, Operation::ReadAnswer { query_id, give_up })
    }

    #[staticmethod]
    fn next_wakeup(now: i64) -> Self {
        made(now, Operation::NextWakeup)
    }

    #[staticmethod]
    fn busy_and_wakeup(now: i64) -> Self {
        made(now, Operation::BusyAndWakeup)
    }

    #[staticmethod]
    fn data_version(now: i64) -> Self {
        made(now, Operation::DataVersion)
    }
}

fn bytes_or_none<'py>(py: Python<'py>, bytes: Option<&[u8]>) -> Bound<'py, PyAny> {
    match bytes {
        Some(bytes) => PyBytes::new(py, bytes).into_any(),
        None => py.None().into_bound(py),
    }
}

/// `(closing | None, [activity lease, ...], wakes_pollers, appended | None, history_length)`
fn committed_to_py<'py>(py: Python<'py>, committed: Committed) -> PyResult<Bound<'py, PyAny>> {
    let leases = PyList::empty(py);
    for lease in committed.leases {
        leases.append(activity_lease_to_py(py, &lease)?)?;
    }
    (
        bytes_or_none(py, committed.closing.as_deref()),
        leases,
        committed.wakes_pollers,
        bytes_or_none(py, committed.appended.as_deref()),
        committed.history_length,
    )
        .into_bound_py_any(py)
}

/// `(run_key, workflow_id, run_id, workflow_type, task_queue, status, history_length,
/// started_ms, closed_ms, last_task_failure, (task_failures, dropped_signals, leased,
/// lease_identity))`, as the memory store's summaries.
fn run_row_to_py<'py>(py: Python<'py>, row: RunSummary) -> PyResult<Bound<'py, PyAny>> {
    (
        row.run_key,
        row.workflow_id,
        row.run_id,
        row.workflow_type,
        row.task_queue,
        row.status,
        row.history_length,
        row.started_ms,
        row.closed_ms,
        row.last_task_failure,
        (
            row.task_failures,
            row.dropped_signals,
            row.workflow_task_leased,
            row.lease_identity,
        ),
    )
        .into_bound_py_any(py)
}

pub fn output_to_py(py: Python<'_>, output: Output) -> PyResult<Bound<'_, PyAny>> {
    match output {
        Output::Nothing | Output::Lease(None) | Output::ResultOnly => Ok(py.None().into_bound(py)),
        Output::Lease(Some(lease)) => workflow_lease_to_py(py, &lease.lease, &lease.tail),
        Output::Committed(committed) => committed_to_py(py, committed),
        Output::Terminated(run_id, closing) => {
            (run_id, PyBytes::new(py, &closing)).into_bound_py_any(py)
        }
        Output::WorkflowPoll(applied, leases) => {
            let list = PyList::empty(py);
            for lease in leases {
                list.append(workflow_lease_to_py(py, &lease.lease, &lease.tail)?)?;
            }
            (applied, list).into_bound_py_any(py)
        }
        Output::ActivityPoll(applied, leases) => {
            let list = PyList::empty(py);
            for lease in leases {
                list.append(activity_lease_to_py(py, &lease)?)?;
            }
            (applied, list).into_bound_py_any(py)
        }
        Output::Run(row) => run_row_to_py(py, row),
        Output::Runs(rows) => {
            let list = PyList::empty(py);
            for row in rows {
                list.append(run_row_to_py(py, row)?)?;
            }
            Ok(list.into_any())
        }
        Output::Bytes(bytes) => Ok(PyBytes::new(py, &bytes).into_any()),
        Output::Closing(closing) => Ok(bytes_or_none(py, closing.as_deref())),
        Output::Closings(closed) => {
            let list = PyList::empty(py);
            for (run_id, closing) in closed {
                list.append((run_id, PyBytes::new(py, &closing)))?;
            }
            Ok(list.into_any())
        }
        Output::Query(query) => match query {
            Some((query_id, workflow_id, run_id, name, input)) => (
                query_id,
                workflow_id,
                run_id,
                name,
                PyBytes::new(py, &input),
            )
                .into_bound_py_any(py),
            None => Ok(py.None().into_bound(py)),
        },
        Output::Answer(answer) => match answer {
            Some((result, error)) => {
                (bytes_or_none(py, result.as_deref()), error).into_bound_py_any(py)
            }
            None => Ok(py.None().into_bound(py)),
        },
        Output::Integer(value) => value.into_bound_py_any(py),
        Output::BusyAndWakeup(busy, wakeup) => (busy, wakeup).into_bound_py_any(py),
    }
}
