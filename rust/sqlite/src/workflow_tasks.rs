//! Workflow-task commits: a leased task's outcome, a new run's first task, an activity's
//! result fused with the task it woke, and a task that failed.

use mainspring_core::history::{decode_event_row, join_event_rows, Event};
use mainspring_core::rules::operations::{self, Committed as Decided, EagerActivities};
use mainspring_core::rules::{ActivityTaskLease, DecodedOutcome, Plan};

use crate::error::StoreResult;
use crate::open::Store;
use crate::operation::{Committed, Eager, HeldAttempt, NewRun};
use crate::records::{load_activity, load_held, load_run, persist, persist_rows};
use crate::runs::identity_of;

fn eager_activities(eager: &Eager) -> Option<EagerActivities<'_>> {
    eager.queue.as_deref().map(|task_queue| EagerActivities {
        task_queue,
        slots: eager.slots,
    })
}

/// One event the caller encoded as a row.
fn decode_row(row: &[u8]) -> StoreResult<Event> {
    Ok(decode_event_row(row)?)
}

/// Applies the cancellations the commit names (activities still open), persists the plan
/// and says what was committed. `run_key` is None for a new run.
fn finish(
    store: &mut Store,
    now: i64,
    run_key: Option<i64>,
    mut plan: Plan,
    decided: Decided,
) -> StoreResult<Committed> {
    let (connection, mut context) = store.split(now);
    if let Some(key) = run_key {
        for &scheduled_event_id in &decided.activities_to_cancel {
            if let Some(activity) = load_activity(connection, key, scheduled_event_id)? {
                operations::cancel_activity(&mut context, &mut plan, activity);
            }
        }
    }
    let (key, rows) = persist_rows(connection, run_key, &plan)?;
    Ok(committed(key, &plan, &decided, rows))
}

fn committed(run_key: i64, plan: &Plan, decided: &Decided, stored: Vec<Vec<u8>>) -> Committed {
    let task_events = decided.first_event_id..=decided.last_event_id;
    let closing = if decided.closed {
        stored.last().map(|row| join_event_rows(&[row]))
    } else {
        None
    };
    // The rows just stored, not encoded again.
    let rows: Vec<Vec<u8>> = plan
        .events
        .iter()
        .zip(stored)
        .filter(|(event, _)| task_events.contains(&event.event_id))
        .map(|(_, row)| row)
        .collect();
    let record = plan.record();
    let leases = decided
        .leased_activities
        .iter()
        .filter_map(|activity| ActivityTaskLease::of(run_key, &record.identity, activity))
        .collect();
    Committed {
        closing,
        leases,
        wakes_pollers: plan.wakes_pollers(),
        appended: (!rows.is_empty()).then(|| join_event_rows(&rows)),
        history_length: decided.last_event_id as i64,
    }
}

/// Commits a leased task's outcome, fenced by the lease.
pub fn complete_workflow_task(
    store: &mut Store,
    now: i64,
    run_key: i64,
    token: i64,
    outcome: Option<&[u8]>,
    leased_length: i64,
    eager: &Eager,
) -> StoreResult<Committed> {
    let decoded = outcome.map(DecodedOutcome::decode).transpose()?;
    let (connection, mut context) = store.split(now);
    let run = load_run(connection, run_key)?;
    let (plan, decided) = operations::complete_workflow_task(
        &mut context,
        run,
        token,
        decoded,
        leased_length.max(0) as u64,
        eager_activities(eager),
    )?;
    finish(store, now, Some(run_key), plan, decided)
}

/// Records a run (`started_row`: its WorkflowStarted event, as the caller encoded it for its
/// instance) with the outcome of its first workflow task, which the caller ran before anything
/// was committed: one commit where there were two.
pub fn start_workflow_with_first_task(
    store: &mut Store,
    now: i64,
    run: &NewRun,
    started_row: &[u8],
    outcome: &[u8],
    eager: &Eager,
) -> StoreResult<Committed> {
    let started = decode_row(started_row)?;
    let decoded = DecodedOutcome::decode(outcome)?;
    let (_, mut context) = store.split(now);
    let (plan, decided) = operations::start_workflow_with_first_task(
        &mut context,
        identity_of(run),
        started,
        decoded,
        eager_activities(eager),
    )?;
    finish(store, now, None, plan, decided)
}

/// Records an activity's result together with the outcome of the workflow task it woke, which
/// the caller ran on its cached instance before anything was committed. If the run moved on
/// meanwhile, only the result is recorded and None is returned (the caller's instance ran
/// ahead of the history and must be dropped).
pub fn complete_activity_with_workflow_task(
    store: &mut Store,
    now: i64,
    attempt: HeldAttempt,
    result_row: &[u8],
    expected_length: i64,
    outcome: &[u8],
    eager: &Eager,
) -> StoreResult<Option<Committed>> {
    let result_event = decode_row(result_row)?;
    let decoded = DecodedOutcome::decode(outcome)?;
    let (connection, mut context) = store.split(now);
    let (run, activity) = load_held(connection, attempt)?;
    let (plan, decided) = operations::complete_activity_with_workflow_task(
        &mut context,
        run,
        activity,
        attempt.token,
        result_event,
        expected_length.max(0) as u64,
        decoded,
        eager_activities(eager),
    )?;
    match decided {
        Some(decided) => finish(store, now, Some(attempt.run_key), plan, decided).map(Some),
        None => {
            persist(connection, Some(attempt.run_key), &plan)?;
            Ok(None)
        }
    }
}

/// The worker could not run the task: nothing is recorded; it is retried with backoff.
pub fn fail_workflow_task(
    store: &mut Store,
    now: i64,
    run_key: i64,
    token: i64,
    message: &str,
) -> StoreResult<()> {
    let (connection, mut context) = store.split(now);
    let run = load_run(connection, run_key)?;
    let plan = operations::fail_workflow_task(&mut context, run, token, message)?;
    persist(connection, Some(run_key), &plan).map(drop)
}
