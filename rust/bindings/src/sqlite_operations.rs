//! The native SQLite operations across the boundary: `(name, now, args)` in, the tuples the
//! Python storage already hands out (`_workflow_task`, `activity_task`, `Committed`) back. The
//! argument orders are those of the operations' Python names in `_sqlite_*.py`.

use mainspring_sqlite::{
    ActivityLease, Committed, Eager, NewRun, Operation, Output, Request, WorkflowLease,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

/// Bytes arguments are taken as `bytes` objects (a `Vec<u8>` would be read item by item).
type Blob<'py> = Bound<'py, PyBytes>;

fn owned(blob: &Blob<'_>) -> Vec<u8> {
    blob.as_bytes().to_vec()
}

fn eager(queue: Option<String>, slots: usize) -> Eager {
    Eager { queue, slots }
}

pub fn request_from_py(name: &str, now: i64, args: &Bound<'_, PyTuple>) -> PyResult<Request> {
    let operation = match name {
        "start_workflow" => {
            let (workflow_id, run_id, workflow_type, task_queue, input, eager_lease_ms): (
                _,
                _,
                _,
                _,
                Blob<'_>,
                _,
            ) = args.extract()?;
            Operation::StartWorkflow {
                run: NewRun {
                    workflow_id,
                    run_id,
                    workflow_type,
                    task_queue,
                },
                input: owned(&input),
                eager_lease_ms,
            }
        }
        "start_workflow_with_first_task" => {
            let (
                workflow_id,
                run_id,
                workflow_type,
                task_queue,
                _input,
                started_row,
                outcome,
                queue,
                slots,
            ): (_, _, _, _, Blob<'_>, Blob<'_>, Blob<'_>, _, _) = args.extract()?;
            Operation::StartWorkflowWithFirstTask {
                run: NewRun {
                    workflow_id,
                    run_id,
                    workflow_type,
                    task_queue,
                },
                started_row: owned(&started_row),
                outcome: owned(&outcome),
                eager: eager(queue, slots),
            }
        }
        "complete_workflow_task" => {
            let (run_key, token, outcome, leased_length, queue, slots): (
                _,
                _,
                Option<Blob<'_>>,
                _,
                _,
                _,
            ) = args.extract()?;
            Operation::CompleteWorkflowTask {
                run_key,
                token,
                outcome: outcome.as_ref().map(owned),
                leased_length,
                eager: eager(queue, slots),
            }
        }
        "complete_activity_with_workflow_task" => {
            let (activity_id, token, result, result_row, expected_length, outcome, queue, slots): (
                _,
                _,
                Blob<'_>,
                Blob<'_>,
                _,
                Blob<'_>,
                _,
                _,
            ) = args.extract()?;
            Operation::CompleteActivityWithWorkflowTask {
                activity_id,
                token,
                result: owned(&result),
                result_row: owned(&result_row),
                expected_length,
                outcome: owned(&outcome),
                eager: eager(queue, slots),
            }
        }
        "complete_activity_task" => {
            let (activity_id, token, result, eager_queue, eager_lease_ms): (_, _, Blob<'_>, _, _) =
                args.extract()?;
            Operation::CompleteActivityTask {
                activity_id,
                token,
                result: owned(&result),
                eager_queue,
                eager_lease_ms,
            }
        }
        "closing_event" => {
            let (run_id,) = args.extract()?;
            Operation::ClosingEvent { run_id }
        }
        "poll_workflow_tasks" => {
            let (task_queue, lease_ms, max_tasks, check_due) = args.extract()?;
            Operation::PollWorkflowTasks {
                task_queue,
                lease_ms,
                max_tasks,
                check_due,
            }
        }
        "poll_activity_tasks" => {
            let (task_queue, max_tasks, check_due) = args.extract()?;
            Operation::PollActivityTasks {
                task_queue,
                max_tasks,
                check_due,
            }
        }
        "take_query" => {
            let (task_queue,) = args.extract()?;
            Operation::TakeQuery { task_queue }
        }
        "next_wakeup_ms" => Operation::NextWakeup,
        "data_version" => Operation::DataVersion,
        "closing_events" => {
            let (run_ids,) = args.extract()?;
            Operation::ClosingEvents { run_ids }
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "{other} is not a native SQLite operation"
            )))
        }
    };
    Ok(Request { now, operation })
}

fn bytes_or_none<'py>(py: Python<'py>, bytes: Option<&[u8]>) -> Bound<'py, PyAny> {
    match bytes {
        Some(bytes) => PyBytes::new(py, bytes).into_any(),
        None => py.None().into_bound(py),
    }
}

/// `(run_key, workflow_id, run_id, workflow_type, history_length, token, tail_start, tail)`
fn workflow_lease_to_py<'py>(py: Python<'py>, lease: WorkflowLease) -> PyResult<Bound<'py, PyAny>> {
    (
        lease.run_key,
        lease.workflow_id,
        lease.run_id,
        lease.workflow_type,
        lease.history_length,
        lease.token,
        lease.tail_start,
        PyBytes::new(py, &lease.tail),
    )
        .into_bound_py_any(py)
}

/// `(activity_id, token, workflow_id, run_id, activity_type, input, attempt, details,
/// scheduled_ms, started_ms, deadline_ms, heartbeat_ms, scheduled_event_id)`
fn activity_lease_to_py<'py>(py: Python<'py>, lease: ActivityLease) -> PyResult<Bound<'py, PyAny>> {
    PyTuple::new(
        py,
        [
            lease.activity_id.into_bound_py_any(py)?,
            lease.token.into_bound_py_any(py)?,
            lease.workflow_id.into_bound_py_any(py)?,
            lease.run_id.into_bound_py_any(py)?,
            lease.activity_type.into_bound_py_any(py)?,
            PyBytes::new(py, &lease.input).into_any(),
            lease.attempt.into_bound_py_any(py)?,
            PyBytes::new(py, &lease.heartbeat_details).into_any(),
            lease.scheduled_ms.into_bound_py_any(py)?,
            lease.started_ms.into_bound_py_any(py)?,
            lease.deadline_ms.into_bound_py_any(py)?,
            lease.heartbeat_ms.into_bound_py_any(py)?,
            lease.scheduled_event_id.into_bound_py_any(py)?,
        ],
    )
    .map(Bound::into_any)
}

/// `(closing | None, [activity lease, ...], wakes_pollers, appended | None, history_length)`
fn committed_to_py<'py>(py: Python<'py>, committed: Committed) -> PyResult<Bound<'py, PyAny>> {
    let leases = PyList::empty(py);
    for lease in committed.leases {
        leases.append(activity_lease_to_py(py, lease)?)?;
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

pub fn output_to_py(py: Python<'_>, output: Output) -> PyResult<Bound<'_, PyAny>> {
    match output {
        Output::Lease(Some(lease)) => workflow_lease_to_py(py, lease),
        Output::Committed(committed) => committed_to_py(py, committed),
        Output::Closing(closing) => Ok(bytes_or_none(py, closing.as_deref())),
        Output::Lease(None) | Output::ResultOnly => Ok(py.None().into_bound(py)),
        Output::WorkflowPoll(due, leases) => {
            let list = PyList::empty(py);
            for lease in leases {
                list.append(workflow_lease_to_py(py, lease)?)?;
            }
            (due, list).into_bound_py_any(py)
        }
        Output::ActivityPoll(due, leases) => {
            let list = PyList::empty(py);
            for lease in leases {
                list.append(activity_lease_to_py(py, lease)?)?;
            }
            (due, list).into_bound_py_any(py)
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
        Output::Integer(value) => value.into_bound_py_any(py),
        Output::Closings(closed) => {
            let list = PyList::empty(py);
            for (run_id, closing) in closed {
                list.append((run_id, PyBytes::new(py, &closing)))?;
            }
            Ok(list.into_any())
        }
    }
}
