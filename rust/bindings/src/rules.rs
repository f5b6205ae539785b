//! The rules for stores written in Python (the next one is PostgreSQL on asyncpg): `Rules`
//! decides a whole group of operations (`RuleRequest`s, `rule_requests.rs`) in one call, each
//! on the records its store loaded (`rule_records.rs`), and returns what each decided — the
//! plan to persist, fenced by the versions it names, and what the caller gets back.

use std::collections::BTreeMap;
use std::sync::Mutex;

use mainspring_core::history::{
    decode_event_row, encode_event_row, join_event_rows, Event, Payload,
};
use mainspring_core::rules::operations::{
    self, Committed, Context, EagerActivities, EagerWorkflowTask,
};
use mainspring_core::rules::{
    ActivityRecord, ActivityWrite, DecodedOutcome, Plan, RulesConfig, RunRecord, SplitMixTokens,
    TimerWrite,
};
use mainspring_core::{CoreError, CoreResult};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use pyo3::IntoPyObjectExt;

use crate::errors::{guarded, to_py_error};
use crate::rule_records::{PyActivityRecord, PyRunRecord};
use crate::rule_requests::{Asked, PyRuleRequest};

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
/// request that loaded that same version decides on what the earlier one left; one that loaded
/// another version decides on what it loaded. Such a chained decision stands only if it writes
/// every chained record it used, naming the version the earlier decision wrote: versions are
/// unique, so its write holds only if the earlier one's did, in whatever order a store
/// persists them. A chained decision that writes less (a timer fired on a run an earlier
/// request closed; a request that changes nothing), or that a rule refuses, is reported as a
/// conflict: the state it was decided on may never be stored, so the caller decides again on
/// fresh records.
#[derive(Default)]
struct Chain {
    runs: BTreeMap<i64, (i64, RunRecord)>,
    activities: BTreeMap<(i64, u64), (i64, Option<ActivityRecord>)>,
    /// The chained records the request being decided used: (its activity's scheduled event id
    /// or None for its run, the version the earlier decision wrote).
    used: Vec<(Option<u64>, i64)>,
}

impl Chain {
    fn run(&mut self, loaded: Option<RunRecord>) -> CoreResult<RunRecord> {
        let loaded =
            loaded.ok_or_else(|| CoreError::InvalidCommand("this request needs its run".into()))?;
        match self.runs.get(&loaded.key) {
            Some((decided_on, record)) if *decided_on == loaded.version => {
                self.used.push((None, record.version));
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
        let scheduled_event_id = loaded.scheduled_event_id;
        match self.activities.get(&(run_key, scheduled_event_id)) {
            Some((decided_on, record)) if *decided_on == loaded.version => match record {
                Some(record) => {
                    self.used.push((Some(scheduled_event_id), record.version));
                    Ok(record.clone())
                }
                // Deleted by an earlier request: a conflict (see `decide_one`).
                None => {
                    self.used.push((Some(scheduled_event_id), i64::MIN));
                    Err(CoreError::StaleTask(format!(
                        "activity {scheduled_event_id} is over"
                    )))
                }
            },
            _ => Ok(loaded),
        }
    }

    /// Whether `plan` writes every chained record the request used, at the version the
    /// earlier decision wrote.
    fn writes_what_it_used(&self, plan: &Plan) -> bool {
        self.used.iter().all(|(activity, version)| match activity {
            None => plan
                .run
                .as_ref()
                .is_some_and(|change| change.expected_version == Some(*version)),
            Some(scheduled_event_id) => plan.activities.iter().any(|write| match write {
                ActivityWrite::Update {
                    expected_version,
                    record,
                } => {
                    record.scheduled_event_id == *scheduled_event_id && expected_version == version
                }
                ActivityWrite::Delete {
                    scheduled_event_id: deleted,
                    expected_version,
                } => deleted == scheduled_event_id && expected_version == version,
                ActivityWrite::Insert(_) => false,
            }),
        })
    }

    /// Files what `plan` leaves under the version the requests loaded: a decision chained on
    /// an entry (it names that entry's version) keeps the entry's, so a third request that
    /// loaded the same version chains on the second, not back on the loaded record.
    fn remember(&mut self, run_key: i64, plan: &Plan) {
        if let Some(change) = &plan.run {
            if let (Some(expected), true) = (change.expected_version, run_key != 0) {
                let loaded = match self.runs.get(&run_key) {
                    Some((loaded, record)) if record.version == expected => *loaded,
                    _ => expected,
                };
                self.runs.insert(run_key, (loaded, change.record.clone()));
            }
        }
        for write in &plan.activities {
            let (scheduled_event_id, expected, record) = match write {
                ActivityWrite::Update {
                    expected_version,
                    record,
                } => (
                    record.scheduled_event_id,
                    *expected_version,
                    Some(record.clone()),
                ),
                ActivityWrite::Delete {
                    scheduled_event_id,
                    expected_version,
                } => (*scheduled_event_id, *expected_version, None),
                ActivityWrite::Insert(_) => continue,
            };
            let key = (run_key, scheduled_event_id);
            let loaded = match self.activities.get(&key) {
                Some((loaded, Some(chained))) if chained.version == expected => *loaded,
                _ => expected,
            };
            self.activities.insert(key, (loaded, record));
        }
    }
}

fn one_event(row: &[u8]) -> CoreResult<Event> {
    decode_event_row(row)
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
    chain.used.clear();
    let outcome = decide_on(context, chain, request);
    let stands = match &outcome {
        Ok(decision) => chain.writes_what_it_used(&decision.plan),
        Err(_) => chain.used.is_empty(),
    };
    if !stands {
        return Err(CoreError::Conflict(
            "decided on a state an earlier request of the group left, which may not be stored: \
             decide again on fresh records"
                .into(),
        ));
    }
    if let Ok(decision) = &outcome {
        let run_key = request.run.as_ref().map_or(0, |run| run.key);
        chain.remember(run_key, &decision.plan);
    }
    outcome
}

/// The run as the request loaded it, not chained (see `Chain`).
fn loaded_run(request: &PyRuleRequest) -> CoreResult<RunRecord> {
    request
        .run
        .clone()
        .ok_or_else(|| CoreError::InvalidCommand("this request needs its run".into()))
}

fn run_key_of(request: &PyRuleRequest) -> CoreResult<i64> {
    request
        .run
        .as_ref()
        .map(|run| run.key)
        .ok_or_else(|| CoreError::InvalidCommand("this request needs its run".into()))
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
            identity,
            started_row,
            outcome,
            eager,
        } => {
            let (plan, committed) = operations::start_workflow_with_first_task(
                context,
                identity.clone(),
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
            // Decided on the activity alone: its run is only where it lives.
            let activity = chain.activity(run_key_of(request)?, request.activity.clone())?;
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
            // A retry depends on the activity alone; a failure recorded for good writes the
            // run at the version it was loaded at, and conflicts if an earlier one moved it.
            let run = loaded_run(request)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            decision.plan =
                operations::fail_activity_task(context, run, activity, *token, failure.clone())?;
        }
        Asked::HeartbeatActivityTask { token, details } => {
            let activity = chain.activity(run_key_of(request)?, request.activity.clone())?;
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
            let run = loaded_run(request)?;
            let activity = chain.activity(run.key, request.activity.clone())?;
            decision.plan = operations::apply_activity_deadline(context, run, activity)?;
        }
    }
    Ok(decision)
}

#[pymethods]
impl PyRules {
    /// `token_seed`: where this store's fencing tokens start (draw it from the OS, e.g.
    /// `secrets.randbits(64)`, so processes sharing a database draw different tokens).
    #[new]
    #[pyo3(signature = (token_seed, workflow_task_retry_initial_ms = 1_000, workflow_task_retry_maximum_ms = 60_000, tick_batch = 1_000))]
    fn new(
        token_seed: u64,
        workflow_task_retry_initial_ms: u64,
        workflow_task_retry_maximum_ms: u64,
        tick_batch: usize,
    ) -> Self {
        PyRules {
            config: RulesConfig {
                workflow_task_retry_initial_ms,
                workflow_task_retry_maximum_ms,
                tick_batch,
            },
            tokens: Mutex::new(SplitMixTokens::from_seed(token_seed)),
        }
    }

    /// Most due deadlines one tick applies: a store's tick asks its tables for the earliest
    /// this many (the rule is `rules::tick_batch`).
    #[getter]
    fn tick_batch(&self) -> usize {
        self.config.tick_batch
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
