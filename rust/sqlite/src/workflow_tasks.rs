//! Workflow-task commits: a leased task's outcome, a new run's first task, and an activity's
//! result fused with the task it woke. The outcome's events are numbered and their effects
//! read by the core; this module stores them.

use mainspring_core::dispatch::{effect_of, number_outcome, Effect};
use mainspring_core::history::{
    encode_event_row, join_event_rows, Event, EventAttributes, Payload,
};
use mainspring_core::CoreError;
use rusqlite::{params, OptionalExtension, ToSql};

use crate::activity_tasks::{attempt_deadline, cancel_activity, finish_attempt};
use crate::error::StoreResult;
use crate::open::Store;
use crate::operation::{ActivityLease, Committed, Eager};
use crate::policy::encode_policy;
use crate::runs::{
    append_and_wake, drop_pending_work, insert_events, refuse_running_duplicate, NewRun,
};
use crate::{ACTIVITY_QUEUED, ACTIVITY_RUNNING, IDLE};

/// The commit of an outcome to the run's row, guarded by `GUARD`. Events after what the task
/// saw arrived while it ran (storages append inbound events outside a task's own commit): the
/// run then needs another task at once. The same statement as the Python operations'.
macro_rules! commit_outcome_statement {
    ($guard:literal) => {
        concat!(
            "UPDATE runs SET history_length = history_length + :added, ",
            "task_state = CASE WHEN :status IS NULL AND history_length > coalesce(:seen, ",
            "history_length) THEN 1 ELSE 0 END, ",
            "task_ready_ms = :now, task_failures = 0, last_task_failure = NULL, ",
            "tail_start = coalesce(:seen, history_length) + 1, ",
            "status = coalesce(:status, status), ",
            "closed_ms = CASE WHEN :status IS NULL THEN closed_ms ELSE :now END ",
            "WHERE run_key = :run_key AND ",
            $guard,
            " RETURNING history_length, workflow_id, run_id"
        )
    };
}

/// A leased task's commit: fenced by its lease.
const COMMIT_LEASED_OUTCOME: &str = commit_outcome_statement!(
    "task_state = 2 AND task_token = :token AND task_deadline_ms >= :now"
);
/// A fused commit (an activity result and the task it woke): no lease was taken, so it is
/// guarded by the history length the worker's instance has seen, on a run no task holds.
const COMMIT_FUSED_OUTCOME: &str = commit_outcome_statement!(
    "status = 'RUNNING' AND task_state = 0 AND history_length = :expected"
);

/// The status an outcome closes its run with, if it does.
fn closing_status(events: &[Event]) -> Option<&'static str> {
    events
        .iter()
        .find_map(|event| match effect_of(&event.attributes) {
            Some(Effect::Close(status)) => Some(status.name()),
            _ => None,
        })
}

/// The run's row after the commit: `(history length, workflow id, run id)`, or None when the
/// guard did not hold.
#[allow(clippy::too_many_arguments)]
fn update_run(
    store: &Store,
    statement: &str,
    now: i64,
    run_key: i64,
    seen: Option<u64>,
    events: &[Event],
    extra_events: i64,
    guard: (&str, i64),
) -> StoreResult<Option<(i64, String, String)>> {
    let added = events.len() as i64 + extra_events;
    let seen = seen.map(|seen| seen as i64);
    let status = closing_status(events);
    let parameters: [(&str, &dyn ToSql); 6] = [
        (":added", &added),
        (":seen", &seen),
        (":status", &status),
        (":now", &now),
        (":run_key", &run_key),
        (guard.0, &guard.1),
    ];
    Ok(store
        .connection
        .prepare_cached(statement)?
        .query_row(&parameters[..], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?)
}

/// Commits a leased task's outcome, fenced by the lease. The outcome's events are numbered
/// from `leased_length` + 1 first (the history rarely grows while a task runs, and then they
/// are numbered again), so the lease check, the history length and the run's new state are
/// one statement.
pub fn complete_workflow_task(
    store: &mut Store,
    now: i64,
    run_key: i64,
    token: i64,
    outcome: Option<&[u8]>,
    leased_length: i64,
    eager: &Eager,
) -> StoreResult<Committed> {
    let (seen, mut events) = match outcome {
        Some(outcome) => {
            let (seen, events) = number_outcome(outcome, leased_length as u64 + 1, now)?;
            (Some(seen), events)
        }
        None => (None, Vec::new()),
    };
    let stale = || CoreError::StaleTask(format!("workflow task {token}"));
    let (new_length, workflow_id, run_id) = update_run(
        store,
        COMMIT_LEASED_OUTCOME,
        now,
        run_key,
        seen,
        &events,
        0,
        (":token", token),
    )?
    .ok_or_else(stale)?;
    let length = new_length - events.len() as i64;
    if let Some(seen) = seen {
        if seen as i64 > length {
            return Err(CoreError::StaleTask(format!(
                "task saw event {seen} but the history has {length}"
            ))
            .into());
        }
    }
    if let (Some(outcome), true) = (outcome, length != leased_length) {
        events = number_outcome(outcome, length as u64 + 1, now)?.1;
    }
    // Events that arrived while the task ran queued the run's next task.
    let unseen = seen.is_some_and(|seen| (seen as i64) < length);
    let identity = (workflow_id.as_str(), run_id.as_str());
    store_outcome(
        store, now, run_key, &events, new_length, unseen, identity, eager, None,
    )
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
    refuse_running_duplicate(&store.connection, &run.workflow_id)?;
    let (seen, events) = number_outcome(outcome, 2, now)?;
    if seen != 1 {
        return Err(CoreError::StaleTask(format!(
            "a first workflow task sees event 1, not {seen}"
        ))
        .into());
    }
    let status = closing_status(&events);
    let length = 1 + events.len() as i64;
    let run_key: i64 = store
        .connection
        .prepare_cached(
            "INSERT INTO runs (workflow_id, run_id, workflow_type, task_queue, status, \
             history_length, started_ms, closed_ms, task_state, task_ready_ms, tail_start) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 2) RETURNING run_key",
        )?
        .query_row(
            params![
                run.workflow_id,
                run.run_id,
                run.workflow_type,
                run.task_queue,
                status.unwrap_or("RUNNING"),
                length,
                now,
                status.map(|_| now),
                IDLE,
                now,
            ],
            |row| row.get(0),
        )?;
    let started = (1, "WorkflowStarted", started_row);
    let identity = (run.workflow_id.as_str(), run.run_id.as_str());
    store_outcome(
        store,
        now,
        run_key,
        &events,
        length,
        false,
        identity,
        eager,
        Some(started),
    )
}

/// The activity result of a fused commit.
pub struct FusedResult<'a> {
    pub activity_id: i64,
    pub token: i64,
    pub result: &'a [u8],
    /// Its ActivityCompleted event, numbered `expected_length` + 1, as the caller encoded it.
    pub result_row: &'a [u8],
    pub expected_length: i64,
}

/// Records an activity's result together with the outcome of the workflow task it woke, which
/// the caller ran on its cached instance before anything was committed. Guarded by the history
/// length: if the run moved on meanwhile (a signal, a timer, another worker), only the result
/// is recorded, as `complete_activity_task` does, and None is returned (the caller's instance
/// ran ahead of the history and must be dropped).
pub fn complete_activity_with_workflow_task(
    store: &mut Store,
    now: i64,
    fused: FusedResult<'_>,
    outcome: &[u8],
    eager: &Eager,
) -> StoreResult<Option<Committed>> {
    let (run_key, scheduled_event_id, attempt) =
        finish_attempt(store, fused.activity_id, fused.token)?;
    let expected = fused.expected_length;
    let (seen, events) = number_outcome(outcome, expected as u64 + 2, now)?;
    let mut returned = None;
    if seen as i64 == expected + 1 {
        returned = update_run(
            store,
            COMMIT_FUSED_OUTCOME,
            now,
            run_key,
            Some(seen),
            &events,
            1,
            (":expected", expected),
        )?;
    }
    let Some((new_length, workflow_id, run_id)) = returned else {
        let completed = EventAttributes::ActivityCompleted {
            scheduled_event_id,
            result: Payload(fused.result.to_vec()),
            attempt,
        };
        append_and_wake(store, run_key, now, completed, None, 0)?;
        return Ok(None);
    };
    let result_event = (expected + 1, "ActivityCompleted", fused.result_row);
    let identity = (workflow_id.as_str(), run_id.as_str());
    store_outcome(
        store,
        now,
        run_key,
        &events,
        new_length,
        false,
        identity,
        eager,
        Some(result_event),
    )
    .map(Some)
}

/// Inserts a task's events (after `first_event`, the inbound event a fused commit records
/// first) and applies their effects, once the run's row is written.
#[allow(clippy::too_many_arguments)]
fn store_outcome(
    store: &mut Store,
    now: i64,
    run_key: i64,
    events: &[Event],
    new_length: i64,
    unseen: bool,
    (workflow_id, run_id): (&str, &str),
    eager: &Eager,
    first_event: Option<(i64, &str, &[u8])>,
) -> StoreResult<Committed> {
    let rows: Vec<Vec<u8>> = events.iter().map(encode_event_row).collect();
    let mut inserted: Vec<(i64, &str, &[u8])> = Vec::with_capacity(rows.len() + 1);
    inserted.extend(first_event);
    inserted.extend(events.iter().zip(&rows).map(|(event, row)| {
        (
            event.event_id as i64,
            event.attributes.kind(),
            row.as_slice(),
        )
    }));
    insert_events(&store.connection, run_key, &inserted)?;
    let mut committed = Committed {
        closing: None,
        leases: Vec::new(),
        wakes_pollers: unseen,
        appended: None,
        history_length: new_length,
    };
    let Some(last_row) = rows.last() else {
        return Ok(committed);
    };
    committed.appended = Some(join_event_rows(&rows));
    if closing_status(events).is_some() {
        // Nothing of a closed run stays pending; the task's other effects are moot.
        drop_pending_work(&store.connection, run_key)?;
        committed.closing = Some(join_event_rows(std::slice::from_ref(last_row)));
        committed.wakes_pollers = false;
        return Ok(committed);
    }
    // All of the task's events are in before any effect runs: an effect that records an event
    // itself (a canceled activity) must not split the task's command events.
    let identity = (workflow_id, run_id);
    for event in events {
        if let Some(effect) = effect_of(&event.attributes) {
            apply_effect(
                store,
                now,
                run_key,
                event.event_id as i64,
                effect,
                eager,
                identity,
                &mut committed,
            )?;
        }
    }
    Ok(committed)
}

#[allow(clippy::too_many_arguments)]
fn apply_effect(
    store: &mut Store,
    now: i64,
    run_key: i64,
    event_id: i64,
    effect: Effect<'_>,
    eager: &Eager,
    (workflow_id, run_id): (&str, &str),
    committed: &mut Committed,
) -> StoreResult<()> {
    let Effect::ScheduleActivity {
        activity_type,
        input,
        options,
    } = effect
    else {
        committed.wakes_pollers = true;
        return match effect {
            Effect::StartTimer { duration_ms } => {
                store
                    .connection
                    .prepare_cached(
                        "INSERT INTO timers (run_key, started_event_id, fire_ms) VALUES (?, ?, ?)",
                    )?
                    .execute(params![run_key, event_id, now + duration_ms as i64])?;
                Ok(())
            }
            Effect::CancelTimer { started_event_id } => {
                store
                    .connection
                    .prepare_cached(
                        "DELETE FROM timers WHERE run_key = ? AND started_event_id = ?",
                    )?
                    .execute(params![run_key, started_event_id as i64])?;
                Ok(())
            }
            Effect::CancelActivity { scheduled_event_id } => {
                cancel_activity(store, now, run_key, scheduled_event_id)
            }
            Effect::ScheduleActivity { .. } | Effect::Close(_) => Ok(()),
        };
    };
    let milliseconds = |value: Option<u64>| value.map(|ms| ms as i64);
    let to_close = milliseconds(options.schedule_to_close_ms);
    let to_start = milliseconds(options.schedule_to_start_ms);
    let start_to_close = milliseconds(options.start_to_close_ms);
    let heartbeat = milliseconds(options.heartbeat_ms);
    let policy = encode_policy(&options.retry_policy);
    let close_deadline = to_close.map(|ms| now + ms);
    let takes = eager.queue.as_deref() == Some(options.task_queue.as_str())
        && committed.leases.len() < eager.slots;
    // Queued for pollers, or inserted as a running attempt leased to the caller (eager
    // execution: one statement instead of insert, select, update).
    let token = takes.then(|| store.tokens.next());
    let per_attempt = attempt_deadline(now, start_to_close, to_close).filter(|_| takes);
    let activity_id: i64 = store
        .connection
        .prepare_cached(
            "INSERT INTO activities (run_key, scheduled_event_id, task_queue, activity_type, \
             input, policy, schedule_to_close_ms, schedule_to_start_ms, start_to_close_ms, \
             heartbeat_ms, attempt, scheduled_ms, state, ready_ms, start_deadline_ms, \
             close_deadline_ms, token, started_ms, attempt_deadline_ms, heartbeat_deadline_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING activity_id",
        )?
        .query_row(
            params![
                run_key,
                event_id,
                options.task_queue,
                activity_type,
                input.0,
                policy,
                to_close,
                to_start,
                start_to_close,
                heartbeat,
                now,
                if takes {
                    ACTIVITY_RUNNING
                } else {
                    ACTIVITY_QUEUED
                },
                now,
                to_start.filter(|_| !takes).map(|ms| now + ms),
                close_deadline,
                token,
                token.map(|_| now),
                per_attempt,
                heartbeat.filter(|_| takes).map(|ms| now + ms),
            ],
            |row| row.get(0),
        )?;
    let Some(token) = token else {
        committed.wakes_pollers = true;
        return Ok(());
    };
    committed.leases.push(ActivityLease {
        activity_id,
        token,
        workflow_id: workflow_id.to_string(),
        run_id: run_id.to_string(),
        activity_type: activity_type.to_string(),
        input: input.0.clone(),
        attempt: 1,
        heartbeat_details: Vec::new(),
        scheduled_ms: now,
        started_ms: now,
        deadline_ms: [per_attempt, close_deadline].into_iter().flatten().min(),
        heartbeat_ms: heartbeat,
        scheduled_event_id: event_id,
    });
    Ok(())
}
