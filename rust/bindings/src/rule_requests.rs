//! `RuleRequest`: one operation of `mainspring_core::rules::operations` a store written in
//! Python asks the rules to decide, with the records it loaded for it.

use mainspring_core::history::Failure;
use mainspring_core::rules::{ActivityRecord, RunIdentity, RunRecord, TimerRecord};
use pyo3::prelude::*;

use crate::convert::failure_from_py;
use crate::rule_records::{PyActivityRecord, PyRunRecord};

/// What a request asks, with the records it was loaded with.
#[derive(Clone)]
pub(crate) enum Asked {
    StartWorkflow {
        identity: RunIdentity,
        input: Vec<u8>,
        eager_lease_ms: Option<u64>,
    },
    StartWorkflowWithFirstTask {
        identity: RunIdentity,
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
        failure: Failure,
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
    pub(crate) asked: Asked,
    pub(crate) run: Option<RunRecord>,
    pub(crate) activity: Option<ActivityRecord>,
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
    #[pyo3(signature = (workflow_id, run_id, workflow_type, task_queue, started_row, outcome, eager_queue, eager_slots))]
    fn start_workflow_with_first_task(
        workflow_id: String,
        run_id: String,
        workflow_type: String,
        task_queue: String,
        started_row: &[u8],
        outcome: &[u8],
        eager_queue: Option<String>,
        eager_slots: usize,
    ) -> Self {
        let identity = RunIdentity {
            workflow_id,
            run_id,
            workflow_type,
            task_queue,
        };
        request(
            Asked::StartWorkflowWithFirstTask {
                identity,
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
