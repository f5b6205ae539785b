//! The memory store's operations: load, decide (`rules::operations`), persist.

use super::{ActivityKey, MemoryStore};
use crate::error::{CoreError, CoreResult};
use crate::history::{Event, EventAttributes, Failure, Payload};
use crate::rules::operations::{self, Committed, Context, EagerActivities};
use crate::rules::{
    ActivityTaskLease, DecodedOutcome, Plan, RunIdentity, RunRecord, RunStatus, WorkflowTaskLease,
};

#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub run_key: i64,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
    pub status: RunStatus,
    pub history_length: u64,
    pub started_ms: i64,
    pub closed_ms: Option<i64>,
    pub last_task_failure: Option<String>,
    /// Workflow tasks of the run that failed in a row (0 once one completes).
    pub task_failures: u32,
    /// Signals its tasks dropped because their payload did not decode.
    pub dropped_signals: u32,
    /// Whether a worker holds the run's workflow task (its lease), and which one, where the
    /// store records it (`describe` of a database store; a memory store's holder is always
    /// its own process, which the binding names).
    pub workflow_task_leased: bool,
    pub lease_identity: Option<String>,
}

impl RunSummary {
    pub fn of(record: &RunRecord) -> Self {
        RunSummary {
            run_key: record.key,
            workflow_id: record.identity.workflow_id.clone(),
            run_id: record.identity.run_id.clone(),
            workflow_type: record.identity.workflow_type.clone(),
            task_queue: record.identity.task_queue.clone(),
            status: record.status,
            history_length: record.history_length,
            started_ms: record.started_ms,
            closed_ms: record.closed_ms,
            last_task_failure: record.last_task_failure.clone(),
            task_failures: record.task_failures,
            dropped_signals: record.dropped_signals,
            workflow_task_leased: record.workflow_task_is_leased(),
            lease_identity: None,
        }
    }
}

impl MemoryStore {
    /// Decides with this store's settings and tokens at `now_ms`.
    pub(crate) fn decide<T>(
        &mut self,
        now_ms: i64,
        decision: impl FnOnce(&mut Context<'_>) -> T,
    ) -> T {
        let mut context = Context {
            now_ms,
            config: &self.config,
            tokens: &mut self.tokens,
        };
        decision(&mut context)
    }

    fn current_run_key(&self, workflow_id: &str) -> CoreResult<i64> {
        self.latest_runs
            .get(workflow_id)
            .copied()
            .ok_or_else(|| CoreError::WorkflowNotFound(workflow_id.to_string()))
    }

    pub fn start_workflow(
        &mut self,
        workflow_id: &str,
        run_id: &str,
        workflow_type: &str,
        task_queue: &str,
        input: Payload,
        now_ms: i64,
    ) -> CoreResult<i64> {
        let identity = RunIdentity {
            workflow_id: workflow_id.to_string(),
            run_id: run_id.to_string(),
            workflow_type: workflow_type.to_string(),
            task_queue: task_queue.to_string(),
        };
        let plan = self.decide(now_ms, |context| {
            operations::start_workflow(context, identity, input, None)
        });
        self.persist(None, plan)
    }

    /// Leases the oldest ready workflow task of `task_queue`.
    pub fn poll_workflow_task(
        &mut self,
        task_queue: &str,
        now_ms: i64,
        lease_ms: u64,
    ) -> Option<WorkflowTaskLease> {
        let &(ready_at_ms, run_key) = self.workflow_queues.get(task_queue)?.first()?;
        if ready_at_ms > now_ms {
            return None;
        }
        let run = self.load_run(run_key).ok()?;
        let plan = self
            .decide(now_ms, |context| {
                operations::lease_workflow_task(context, run, lease_ms)
            })
            .ok()?;
        let lease = WorkflowTaskLease::of(plan.record());
        self.persist(Some(run_key), plan).ok()?;
        lease
    }

    /// Commits a workflow task's outcome atomically (its events, boundary first; the activity
    /// tasks and timers they create; the run's new status), fenced by the lease it was leased
    /// under. Returns whether the run closed.
    pub fn complete_workflow_task(
        &mut self,
        lease: &WorkflowTaskLease,
        outcome: Vec<EventAttributes>,
        now_ms: i64,
    ) -> CoreResult<bool> {
        self.complete_workflow_task_at(lease, outcome, now_ms, now_ms)
    }

    /// [`Self::complete_workflow_task`], recording the task's events at `task_time_ms`: the
    /// time its workflow code saw, which replay must hand it again.
    pub fn complete_workflow_task_at(
        &mut self,
        lease: &WorkflowTaskLease,
        outcome: Vec<EventAttributes>,
        now_ms: i64,
        task_time_ms: i64,
    ) -> CoreResult<bool> {
        let decoded = if outcome.is_empty() {
            None
        } else {
            Some(DecodedOutcome::from_attributes(outcome, task_time_ms)?)
        };
        self.commit_decoded(
            lease.run_key,
            lease.token,
            decoded,
            lease.history_length,
            now_ms,
        )
    }

    /// Commits an encoded outcome (`WorkflowRun.complete`'s), or none; `leased_length` is the
    /// history length the lease handed out. Returns whether the run closed.
    pub fn complete_workflow_task_encoded(
        &mut self,
        run_key: i64,
        token: i64,
        outcome: Option<&[u8]>,
        leased_length: u64,
        now_ms: i64,
    ) -> CoreResult<bool> {
        let decoded = outcome.map(DecodedOutcome::decode).transpose()?;
        self.commit_decoded(run_key, token, decoded, leased_length, now_ms)
    }

    fn commit_decoded(
        &mut self,
        run_key: i64,
        token: i64,
        outcome: Option<DecodedOutcome>,
        leased_length: u64,
        now_ms: i64,
    ) -> CoreResult<bool> {
        let run = self.load_run(run_key)?;
        let no_eager: Option<EagerActivities<'_>> = None;
        let (mut plan, committed) = self.decide(now_ms, |context| {
            operations::complete_workflow_task(
                context,
                run,
                token,
                outcome,
                leased_length,
                no_eager,
            )
        })?;
        self.cancel_named_activities(run_key, &mut plan, &committed, now_ms);
        self.persist(Some(run_key), plan)?;
        Ok(committed.closed)
    }

    /// Applies the cancellations a commit names to its plan (the activities still open).
    fn cancel_named_activities(
        &mut self,
        run_key: i64,
        plan: &mut Plan,
        committed: &Committed,
        now_ms: i64,
    ) {
        for &scheduled_event_id in &committed.activities_to_cancel {
            if let Ok(activity) = self.load_activity((run_key, scheduled_event_id)) {
                self.decide(now_ms, |context| {
                    operations::cancel_activity(context, plan, activity)
                });
            }
        }
    }

    /// The workflow code failed this task (an exception in the engine's path, a workflow that
    /// escaped its deterministic loop, non-determinism): nothing is recorded, and the task is
    /// retried after a growing delay so a fixed deployment can pick it up.
    pub fn fail_workflow_task(
        &mut self,
        run_key: i64,
        token: i64,
        message: &str,
        now_ms: i64,
    ) -> CoreResult<()> {
        let run = self.load_run(run_key)?;
        let plan = self.decide(now_ms, |context| {
            operations::fail_workflow_task(context, run, token, message)
        })?;
        self.persist(Some(run_key), plan).map(drop)
    }

    fn on_current_run(
        &mut self,
        workflow_id: &str,
        now_ms: i64,
        decision: impl FnOnce(&mut Context<'_>, RunRecord) -> CoreResult<Plan>,
    ) -> CoreResult<()> {
        let run_key = self.current_run_key(workflow_id)?;
        let run = self.load_run(run_key)?;
        let plan = self.decide(now_ms, |context| decision(context, run))?;
        if !plan.is_empty() {
            self.persist(Some(run_key), plan)?;
        }
        Ok(())
    }

    pub fn signal_workflow(
        &mut self,
        workflow_id: &str,
        signal_name: &str,
        input: Payload,
        now_ms: i64,
    ) -> CoreResult<()> {
        self.on_current_run(workflow_id, now_ms, |context, run| {
            operations::signal_workflow(context, run, signal_name, input)
        })
    }

    pub fn request_cancel_workflow(
        &mut self,
        workflow_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> CoreResult<()> {
        self.on_current_run(workflow_id, now_ms, |context, run| {
            operations::request_cancel_workflow(context, run, reason)
        })
    }

    pub fn terminate_workflow(
        &mut self,
        workflow_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> CoreResult<()> {
        self.on_current_run(workflow_id, now_ms, |context, run| {
            operations::terminate_workflow(context, run, reason)
        })
    }

    /// Leases the oldest ready attempt of `task_queue`.
    pub fn poll_activity_task(
        &mut self,
        task_queue: &str,
        now_ms: i64,
    ) -> Option<ActivityTaskLease> {
        let &(ready_at_ms, key) = self.activity_queues.get(task_queue)?.first()?;
        if ready_at_ms > now_ms {
            return None;
        }
        let activity = self.load_activity(key).ok()?;
        let plan = self
            .decide(now_ms, |context| {
                operations::lease_activity_task(context, activity)
            })
            .ok()?;
        let run = self.load_run(key.0).ok()?;
        let lease = plan.activities.first().and_then(|write| match write {
            crate::rules::ActivityWrite::Update { record, .. } => {
                ActivityTaskLease::of(run.key, &run.identity, record)
            }
            _ => None,
        });
        self.persist(Some(key.0), plan).ok()?;
        lease
    }

    pub fn complete_activity_task(
        &mut self,
        key: ActivityKey,
        token: i64,
        result: Payload,
        now_ms: i64,
    ) -> CoreResult<()> {
        let activity = self.load_activity(key)?;
        let run = self.load_run(key.0)?;
        let (plan, _) = self.decide(now_ms, |context| {
            operations::complete_activity_task(context, run, activity, token, result, None)
        })?;
        self.persist(Some(key.0), plan).map(drop)
    }

    /// An attempt failed: retry it under the policy or record the failure.
    pub fn fail_activity_task(
        &mut self,
        key: ActivityKey,
        token: i64,
        failure: Failure,
        now_ms: i64,
    ) -> CoreResult<()> {
        let activity = self.load_activity(key)?;
        let run = self.load_run(key.0)?;
        let plan = self.decide(now_ms, |context| {
            operations::fail_activity_task(context, run, activity, token, failure)
        })?;
        self.persist(Some(key.0), plan).map(drop)
    }

    /// Records progress; returns `StaleTask` once the attempt is over (timed out or the
    /// activity was cancelled), which the worker reports to the activity as cancellation.
    pub fn heartbeat_activity_task(
        &mut self,
        key: ActivityKey,
        token: i64,
        details: Payload,
        now_ms: i64,
    ) -> CoreResult<()> {
        let activity = self.load_activity(key)?;
        let plan = self.decide(now_ms, |context| {
            operations::heartbeat_activity_task(context, activity, token, details)
        })?;
        self.persist(Some(key.0), plan).map(drop)
    }

    pub fn describe(&self, workflow_id: &str) -> CoreResult<RunSummary> {
        let run_key = self.current_run_key(workflow_id)?;
        Ok(RunSummary::of(&self.run(run_key)?.record))
    }

    /// One page of the runs, in key order (start order): up to `limit` runs whose key is
    /// greater than `after_run_key` (None: from the first), of `status` and `workflow_type`
    /// when they are given. Keys index the runs, so the page starts where the last one ended;
    /// a filter is checked run by run from there (a memory store holds what a process made).
    pub fn list(
        &self,
        after_run_key: Option<i64>,
        limit: usize,
        status: Option<&str>,
        workflow_type: Option<&str>,
    ) -> Vec<RunSummary> {
        let first =
            after_run_key.map_or(0, |key| usize::try_from(key.saturating_add(1)).unwrap_or(0));
        self.runs
            .get(first..)
            .unwrap_or_default()
            .iter()
            .map(|run| &run.record)
            .filter(|record| status.is_none_or(|name| record.status.name() == name))
            .filter(|record| workflow_type.is_none_or(|name| record.identity.workflow_type == name))
            .take(limit)
            .map(RunSummary::of)
            .collect()
    }

    /// Events of a run from `from_event_id` (1-based, inclusive) to the end.
    pub fn history(&self, run_key: i64, from_event_id: u64) -> CoreResult<&[Event]> {
        let events = &self.run(run_key)?.events;
        let start = (from_event_id.max(1) - 1).min(events.len() as u64) as usize;
        Ok(&events[start..])
    }
}
