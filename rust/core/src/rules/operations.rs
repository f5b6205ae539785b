//! The store operations as decisions: each takes the records its store loaded, applies the
//! rules, and returns the [`Plan`] to persist (and what its caller gets back). A store's own
//! code only loads, persists and fences; every store, in any language, calls these.
//!
//! Which records each needs loaded (by the store, inside the transaction that persists the
//! plan): the run's record (by key, or the current run of a workflow id), the activity's
//! record (by run and scheduled event id), a timer's record. [`complete_workflow_task`] and
//! its fused variants may also name activities to cancel ([`Committed::activities_to_cancel`]):
//! the store loads each that is still open and applies [`cancel_activity`] to the same plan,
//! in order, before persisting it.

use super::activity::{ActivityRecord, AttemptEnd, TimerRecord};
use super::effects::{effect_of, Effect};
use super::outcome::DecodedOutcome;
use super::plan::{ActivityWrite, Plan, TimerWrite};
pub use super::run::EagerWorkflowTask;
use super::run::{RunIdentity, RunRecord, RunStatus};
use super::tokens::TokenSource;
use super::RulesConfig;
use crate::error::{CoreError, CoreResult};
use crate::history::{Event, EventAttributes, Failure, Payload, WorkflowStartedAttributes};

/// What every decision is made with: the time, the settings, and where tokens come from.
pub struct Context<'a> {
    pub now_ms: i64,
    pub config: &'a RulesConfig,
    pub tokens: &'a mut dyn TokenSource,
}

/// A worker that can run attempts scheduled on its task queue at once (eager execution):
/// up to `slots` of them are recorded already leased to it.
#[derive(Clone, Copy, Debug)]
pub struct EagerActivities<'a> {
    pub task_queue: &'a str,
    pub slots: usize,
}

/// What a workflow task's commit did, beyond its plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Committed {
    /// The last event the task had seen.
    pub seen_event_id: u64,
    /// The task's own events, `first_event_id..=last_event_id` (its boundary to its last
    /// command; empty when it recorded none): what a cached instance that ran it learns ids
    /// for. Events an effect records (a cancelled activity) come after them.
    pub first_event_id: u64,
    pub last_event_id: u64,
    /// Activities it scheduled that were recorded already leased to the caller.
    pub leased_activities: Vec<ActivityRecord>,
    /// The scheduled event ids of the activities its outcome cancels: see the module doc.
    pub activities_to_cancel: Vec<u64>,
    /// The task closed the run (its closing event is the plan's last).
    pub closed: bool,
}

/// Appends an inbound event and wakes the run's workflow task: returns whether `eager` took
/// the task.
fn append_inbound(
    context: &mut Context<'_>,
    plan: &mut Plan,
    attributes: EventAttributes,
    eager: Option<EagerWorkflowTask<'_>>,
) -> bool {
    let now = context.now_ms;
    plan.append(now, attributes);
    plan.record_mut().wake(now, eager, context.tokens)
}

/// Records a new run with its WorkflowStarted event and queues its first workflow task, or
/// leases it to `eager`. Whether the workflow id is free is the store's unique index over
/// open runs (a duplicate is `WorkflowAlreadyStarted`).
pub fn start_workflow(
    context: &mut Context<'_>,
    identity: RunIdentity,
    input: Payload,
    eager: Option<EagerWorkflowTask<'_>>,
) -> Plan {
    let now = context.now_ms;
    let started = started_attributes(&identity, input);
    let version = context.tokens.next_token();
    let mut plan = Plan::insert(RunRecord::new(identity, now, version));
    append_inbound(context, &mut plan, started, eager);
    plan
}

fn started_attributes(identity: &RunIdentity, input: Payload) -> EventAttributes {
    EventAttributes::WorkflowStarted(Box::new(WorkflowStartedAttributes {
        workflow_type: identity.workflow_type.clone(),
        workflow_id: identity.workflow_id.clone(),
        run_id: identity.run_id.clone(),
        task_queue: identity.task_queue.clone(),
        input,
    }))
}

/// Records the new run `identity` together with the outcome of its first workflow task, which
/// the caller ran on `started` (the WorkflowStarted event as it encoded it for its instance)
/// before anything was recorded: one commit where there were two.
pub fn start_workflow_with_first_task(
    context: &mut Context<'_>,
    identity: RunIdentity,
    started: Event,
    outcome: DecodedOutcome,
    eager: Option<EagerActivities<'_>>,
) -> CoreResult<(Plan, Committed)> {
    let EventAttributes::WorkflowStarted(attributes) = &started.attributes else {
        return Err(CoreError::InvalidCommand(format!(
            "a run starts with WorkflowStarted, not {}",
            started.attributes.kind()
        )));
    };
    if started.event_id != 1 || outcome.seen_event_id != 1 {
        return Err(CoreError::InvalidCommand(format!(
            "a first workflow task sees event 1 (the start), not {}",
            outcome.seen_event_id
        )));
    }
    let recorded = RunIdentity {
        workflow_id: attributes.workflow_id.clone(),
        run_id: attributes.run_id.clone(),
        workflow_type: attributes.workflow_type.clone(),
        task_queue: attributes.task_queue.clone(),
    };
    if recorded != identity {
        return Err(CoreError::InvalidCommand(
            "the started event is not that of the run being started".into(),
        ));
    }
    let version = context.tokens.next_token();
    let mut plan = Plan::insert(RunRecord::new(identity, context.now_ms, version));
    plan.record_mut().append(1);
    plan.events.push(started);
    let committed = record_outcome(context, &mut plan, outcome, eager)?;
    Ok((plan, committed))
}

/// Hands a queued, ready workflow task to a worker for `lease_ms` (StaleTask if it is not
/// leasable any more: the store skips that candidate).
pub fn lease_workflow_task(
    context: &mut Context<'_>,
    run: RunRecord,
    lease_ms: u64,
) -> CoreResult<Plan> {
    let token = context.tokens.next_token();
    let mut plan = Plan::update(run, context.tokens);
    plan.record_mut()
        .lease_workflow_task(context.now_ms, lease_ms, token)?;
    Ok(plan)
}

/// Commits a leased workflow task's outcome, fenced by its lease token: its events (boundary
/// first) and what they set in motion — activities queued (or leased to `eager`), timers set
/// or cancelled, activities to cancel, the run closed. No outcome: the task had nothing to
/// record (it saw `leased_length` events, what the lease handed out).
pub fn complete_workflow_task(
    context: &mut Context<'_>,
    run: RunRecord,
    token: i64,
    outcome: Option<DecodedOutcome>,
    leased_length: u64,
    eager: Option<EagerActivities<'_>>,
) -> CoreResult<(Plan, Committed)> {
    run.check_workflow_task_lease(token, context.now_ms)?;
    let mut plan = Plan::update(run, context.tokens);
    match outcome {
        Some(outcome) => {
            let committed = record_outcome(context, &mut plan, outcome, eager)?;
            Ok((plan, committed))
        }
        None => {
            let record = plan.record_mut();
            let seen = leased_length.min(record.history_length);
            record.commit_workflow_task(context.now_ms, seen, 0, None);
            let committed = Committed {
                seen_event_id: seen,
                first_event_id: record.history_length + 1,
                last_event_id: record.history_length,
                ..Committed::default()
            };
            Ok((plan, committed))
        }
    }
}

/// Appends a task's outcome to the plan's run and applies what its events set in motion.
/// All of the task's events go in before any effect: an effect that records an event itself
/// (a cancelled activity) must not split the task's command events, which replay reads as one
/// block right after the boundary.
fn record_outcome(
    context: &mut Context<'_>,
    plan: &mut Plan,
    mut outcome: DecodedOutcome,
    eager: Option<EagerActivities<'_>>,
) -> CoreResult<Committed> {
    let now = context.now_ms;
    let length = plan.record().history_length;
    let seen = outcome.seen_event_id;
    if seen > length {
        return Err(CoreError::InvalidCommand(format!(
            "the task saw event {seen} but the history has {length}"
        )));
    }
    outcome.number(length + 1, now);
    let closes = outcome.closes();
    let added = outcome.events.len() as u64;
    let record = plan.record_mut();
    record.commit_workflow_task(now, seen, added, closes);
    record.dropped_signals = record
        .dropped_signals
        .saturating_add(outcome.dropped_signals);
    let first_new = plan.events.len();
    plan.events.extend(outcome.events);
    let mut committed = Committed {
        seen_event_id: seen,
        first_event_id: length + 1,
        last_event_id: length + added,
        closed: closes.is_some(),
        ..Committed::default()
    };
    if closes.is_some() {
        // Nothing of a closed run stays pending; the task's other effects are moot.
        plan.drop_pending_work = true;
        return Ok(committed);
    }
    let Plan {
        events,
        activities,
        timers,
        ..
    } = plan;
    for event in &events[first_new..] {
        match effect_of(&event.attributes) {
            Some(Effect::ScheduleActivity {
                seq,
                activity_type,
                input,
                options,
            }) => {
                let mut activity = ActivityRecord::scheduled(
                    event.event_id,
                    seq.to_string(),
                    activity_type.to_string(),
                    input.clone(),
                    options.clone(),
                    now,
                );
                activity.version = context.tokens.next_token();
                let takes = eager.is_some_and(|eager| {
                    eager.task_queue == options.task_queue
                        && committed.leased_activities.len() < eager.slots
                });
                if takes {
                    activity.lease(now, context.tokens.next_token())?;
                    committed.leased_activities.push(activity.clone());
                }
                activities.push(ActivityWrite::Insert(activity));
            }
            Some(Effect::StartTimer { duration_ms }) => {
                timers.push(TimerWrite::Insert(TimerRecord {
                    started_event_id: event.event_id,
                    fire_at_ms: now.saturating_add(duration_ms as i64),
                }));
            }
            Some(Effect::CancelTimer { started_event_id }) => {
                timers.push(TimerWrite::Cancel { started_event_id });
            }
            Some(Effect::CancelActivity { scheduled_event_id }) => {
                committed.activities_to_cancel.push(scheduled_event_id);
            }
            Some(Effect::Close(_)) | None => {}
        }
    }
    Ok(committed)
}

/// Resolves an open activity of the plan's run as cancelled (try-cancel, Temporal's default:
/// the workflow learns at once; the running attempt learns through its next heartbeat and its
/// late result is refused) and wakes the run.
pub fn cancel_activity(context: &mut Context<'_>, plan: &mut Plan, activity: ActivityRecord) {
    plan.delete_activity(&activity);
    append_inbound(context, plan, activity.canceled(), None);
}

/// The worker could not run the task: nothing is recorded and it is retried with backoff.
pub fn fail_workflow_task(
    context: &mut Context<'_>,
    run: RunRecord,
    token: i64,
    message: &str,
) -> CoreResult<Plan> {
    let mut plan = Plan::update(run, context.tokens);
    plan.record_mut()
        .fail_workflow_task(token, message, context.now_ms, context.config)?;
    Ok(plan)
}

pub fn signal_workflow(
    context: &mut Context<'_>,
    run: RunRecord,
    signal_name: &str,
    input: Payload,
) -> CoreResult<Plan> {
    run.require_running()?;
    let mut plan = Plan::update(run, context.tokens);
    let signaled = EventAttributes::WorkflowSignaled {
        signal_name: signal_name.to_string(),
        input,
    };
    append_inbound(context, &mut plan, signaled, None);
    Ok(plan)
}

/// Records a cancellation request once; a second request changes nothing.
pub fn request_cancel_workflow(
    context: &mut Context<'_>,
    run: RunRecord,
    reason: &str,
) -> CoreResult<Plan> {
    run.require_running()?;
    if run.cancel_requested {
        return Ok(Plan::default());
    }
    let mut plan = Plan::update(run, context.tokens);
    plan.record_mut().cancel_requested = true;
    let requested = EventAttributes::WorkflowCancelRequested {
        reason: reason.to_string(),
    };
    append_inbound(context, &mut plan, requested, None);
    Ok(plan)
}

/// Ends the run at once (its code gets no say) and drops its pending work.
pub fn terminate_workflow(
    context: &mut Context<'_>,
    run: RunRecord,
    reason: &str,
) -> CoreResult<Plan> {
    run.require_running()?;
    let now = context.now_ms;
    let mut plan = Plan::update(run, context.tokens);
    let terminated = EventAttributes::WorkflowTerminated {
        reason: reason.to_string(),
    };
    plan.append(now, terminated);
    plan.record_mut().close(RunStatus::Terminated, now);
    plan.drop_pending_work = true;
    Ok(plan)
}

/// Hands a queued, ready attempt to a worker (StaleTask if it is not leasable any more).
pub fn lease_activity_task(
    context: &mut Context<'_>,
    mut activity: ActivityRecord,
) -> CoreResult<Plan> {
    let expected = activity.version;
    activity.lease(context.now_ms, context.tokens.next_token())?;
    let mut plan = Plan::default();
    plan.update_activity(expected, activity, context.tokens);
    Ok(plan)
}

/// The activity's final outcome: its record goes, the event comes, the run wakes. An
/// activity of a closed run is not open (closing dropped it).
fn resolve_activity(
    context: &mut Context<'_>,
    run: RunRecord,
    activity: &ActivityRecord,
    outcome: EventAttributes,
    eager: Option<EagerWorkflowTask<'_>>,
) -> CoreResult<(Plan, bool)> {
    if !run.is_running() {
        return Err(CoreError::StaleTask(format!(
            "activity {} belongs to a closed run",
            activity.scheduled.activity_id
        )));
    }
    let mut plan = Plan::update(run, context.tokens);
    plan.delete_activity(activity);
    let leased = append_inbound(context, &mut plan, outcome, eager);
    Ok((plan, leased))
}

/// Records an attempt's result, fenced by its token. With `eager`, the workflow task it woke
/// is leased to the caller (if the run's tasks go to its queue); returns whether it was.
pub fn complete_activity_task(
    context: &mut Context<'_>,
    run: RunRecord,
    activity: ActivityRecord,
    token: i64,
    result: Payload,
    eager: Option<EagerWorkflowTask<'_>>,
) -> CoreResult<(Plan, bool)> {
    activity.check_attempt(token, context.now_ms)?;
    let completed = activity.completed(result);
    resolve_activity(context, run, &activity, completed, eager)
}

/// Records an attempt's result together with the outcome of the workflow task it woke, which
/// the caller ran on a cached instance that had seen `expected_length` events, feeding it
/// `result_event` (this attempt's ActivityCompleted, numbered `expected_length + 1`). If the
/// run moved on meanwhile (a signal, a timer, another worker), only the result is recorded,
/// as [`complete_activity_task`] does, and no commit is returned: the caller's instance ran
/// ahead of the history and must be dropped.
#[allow(clippy::too_many_arguments)] // the attempt, the result, and the task it woke
pub fn complete_activity_with_workflow_task(
    context: &mut Context<'_>,
    run: RunRecord,
    activity: ActivityRecord,
    token: i64,
    mut result_event: Event,
    expected_length: u64,
    outcome: DecodedOutcome,
    eager: Option<EagerActivities<'_>>,
) -> CoreResult<(Plan, Option<Committed>)> {
    activity.check_attempt(token, context.now_ms)?;
    let result = match &result_event.attributes {
        EventAttributes::ActivityCompleted {
            scheduled_event_id,
            result,
            attempt,
        } if *scheduled_event_id == activity.scheduled_event_id && *attempt == activity.attempt => {
            result.clone()
        }
        other => {
            return Err(CoreError::InvalidCommand(format!(
                "a fused commit records this attempt's ActivityCompleted, not {}",
                other.kind()
            )))
        }
    };
    let fuses = run.accepts_fused_commit(expected_length)
        && outcome.seen_event_id == expected_length + 1
        && result_event.event_id == expected_length + 1;
    if !fuses {
        let completed = activity.completed(result);
        let (plan, _) = resolve_activity(context, run, &activity, completed, None)?;
        return Ok((plan, None));
    }
    let mut plan = Plan::update(run, context.tokens);
    plan.delete_activity(&activity);
    plan.record_mut().append(1);
    if result_event.timestamp_ms == 0 {
        result_event.timestamp_ms = context.now_ms;
    }
    plan.events.push(result_event);
    let committed = record_outcome(context, &mut plan, outcome, eager)?;
    Ok((plan, Some(committed)))
}

/// An attempt failed: retried under the policy (only the activity's record changes), or the
/// failure is recorded.
pub fn fail_activity_task(
    context: &mut Context<'_>,
    run: RunRecord,
    mut activity: ActivityRecord,
    token: i64,
    failure: Failure,
) -> CoreResult<Plan> {
    activity.check_attempt(token, context.now_ms)?;
    let expected = activity.version;
    match activity.attempt_failed(failure, None, context.now_ms) {
        AttemptEnd::Retried => {
            let mut plan = Plan::default();
            plan.update_activity(expected, activity, context.tokens);
            Ok(plan)
        }
        AttemptEnd::Resolved(outcome) => {
            Ok(resolve_activity(context, run, &activity, outcome, None)?.0)
        }
    }
}

/// Records progress of the running attempt (StaleTask once it is over: timed out, or the
/// activity was cancelled, which the worker reports to the activity as cancellation).
pub fn heartbeat_activity_task(
    context: &mut Context<'_>,
    mut activity: ActivityRecord,
    token: i64,
    details: Payload,
) -> CoreResult<Plan> {
    let expected = activity.version;
    activity.heartbeat(token, details, context.now_ms)?;
    let mut plan = Plan::default();
    plan.update_activity(expected, activity, context.tokens);
    Ok(plan)
}

// Deadlines: what a store's tick applies to each candidate its time indexes find. A
// candidate that is not (or no longer) due gets an empty plan.

/// A due timer fires (a closed run's timer only goes).
pub fn fire_timer(context: &mut Context<'_>, run: RunRecord, timer: TimerRecord) -> Plan {
    if timer.fire_at_ms > context.now_ms {
        return Plan::default();
    }
    let started_event_id = timer.started_event_id;
    let mut plan = if run.is_running() {
        let mut plan = Plan::update(run, context.tokens);
        let fired = EventAttributes::TimerFired { started_event_id };
        append_inbound(context, &mut plan, fired, None);
        plan
    } else {
        Plan::default()
    };
    plan.timers.push(TimerWrite::Fire { started_event_id });
    plan
}

/// A workflow task whose lease passed goes back to the queue for another worker.
pub fn expire_workflow_task_lease(context: &mut Context<'_>, run: RunRecord) -> Plan {
    let mut expired = run.clone();
    if !expired.expire_workflow_task_lease(context.now_ms) {
        return Plan::default();
    }
    let mut plan = Plan::update(run, context.tokens);
    *plan.record_mut() = RunRecord {
        version: plan.record().version,
        ..expired
    };
    plan
}

/// Applies an activity's due timeout (see [`ActivityRecord::apply_due_timeout`]). An activity
/// left behind by a closed run (closing drops them; a store that failed to) only goes.
pub fn apply_activity_deadline(
    context: &mut Context<'_>,
    run: RunRecord,
    mut activity: ActivityRecord,
) -> CoreResult<Plan> {
    if !run.is_running() {
        let mut plan = Plan::default();
        plan.delete_activity(&activity);
        return Ok(plan);
    }
    let expected = activity.version;
    match activity.apply_due_timeout(context.now_ms) {
        None => Ok(Plan::default()),
        Some(AttemptEnd::Retried) => {
            let mut plan = Plan::default();
            plan.update_activity(expected, activity, context.tokens);
            Ok(plan)
        }
        Some(AttemptEnd::Resolved(outcome)) => {
            Ok(resolve_activity(context, run, &activity, outcome, None)?.0)
        }
    }
}
