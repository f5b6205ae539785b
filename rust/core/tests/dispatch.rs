//! The dispatcher and in-memory store: queues, leases, fencing, timers, timeouts, retries.

mod common;

use common::*;
use mainspring_core::history::{
    ActivityOptions, EventAttributes, Failure, Payload, RetryPolicy, TimeoutType,
};
use mainspring_core::memory::MemoryStore;
use mainspring_core::replay::{Command, Job, WorkflowRun};
use mainspring_core::rules::RunStatus;
use mainspring_core::CoreError;

const LEASE: u64 = 1_000;

fn start(store: &mut MemoryStore, id: &str, now: i64) -> i64 {
    store
        .start_workflow(id, &format!("{id}-run"), "wf", "q", payload("null"), now)
        .unwrap()
}

/// Leases the next workflow task, feeds the run its new events, and commits `commands` as the
/// answer to the live activation. Returns that activation's jobs.
fn workflow_task(
    store: &mut MemoryStore,
    run: &mut WorkflowRun,
    now: i64,
    commands: Vec<Command>,
) -> Vec<Job> {
    let lease = store
        .poll_workflow_task("q", now, LEASE)
        .expect("a workflow task");
    let tail = store
        .history(lease.run_key, run.history_length() + 1)
        .unwrap()
        .to_vec();
    run.add_events(tail).unwrap();
    let activation = run
        .next_activation(now, true)
        .unwrap()
        .expect("live activation");
    let outcome = run.complete(commands).unwrap();
    store.complete_workflow_task(&lease, outcome, now).unwrap();
    activation.jobs
}

fn options_with(change: impl FnOnce(&mut ActivityOptions)) -> ActivityOptions {
    let mut options = options();
    change(&mut options);
    options
}

fn schedule_with(seq: u32, options: ActivityOptions) -> Command {
    Command::ScheduleActivity {
        seq,
        activity_type: "act".into(),
        input: payload("null"),
        options: Box::new(options),
    }
}

fn last_event(store: &MemoryStore, run_key: i64) -> EventAttributes {
    store
        .history(run_key, 1)
        .unwrap()
        .last()
        .unwrap()
        .attributes
        .clone()
}

#[test]
fn a_workflow_runs_an_activity_to_completion() {
    let mut store = MemoryStore::default();
    let key = start(&mut store, "w", 0);
    let mut run = WorkflowRun::new();
    let jobs = workflow_task(&mut store, &mut run, 1, vec![schedule(1, "act")]);
    assert!(matches!(jobs[..], [Job::StartWorkflow { .. }]));
    assert!(
        store.poll_workflow_task("q", 1, LEASE).is_none(),
        "nothing new yet"
    );

    let attempt = store.poll_activity_task("q", 2).unwrap();
    assert_eq!(
        (attempt.activity_type.as_str(), attempt.attempt),
        ("act", 1)
    );
    store
        .complete_activity_task(attempt.key, attempt.token, payload("42"), 3)
        .unwrap();

    let jobs = workflow_task(&mut store, &mut run, 4, vec![complete_workflow("42")]);
    assert!(matches!(jobs[..], [Job::ResolveActivity { seq: 1, .. }]));
    let summary = store.describe("w").unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.closed_ms, Some(4));
    assert!(matches!(
        last_event(&store, key),
        EventAttributes::WorkflowCompleted { .. }
    ));
}

#[test]
fn one_outstanding_workflow_task_per_run_and_signals_coalesce() {
    let mut store = MemoryStore::default();
    start(&mut store, "w", 0);
    let lease = store.poll_workflow_task("q", 1, LEASE).unwrap();
    store.signal_workflow("w", "a", payload("1"), 2).unwrap();
    store.signal_workflow("w", "b", payload("2"), 3).unwrap();
    assert!(
        store.poll_workflow_task("q", 3, LEASE).is_none(),
        "no second task while one is leased"
    );
    // The leased task saw only event 1; completing it queues one task for both signals.
    let mut run = WorkflowRun::new();
    run.add_events(store.history(lease.run_key, 1).unwrap()[..1].to_vec())
        .unwrap();
    run.next_activation(1, true).unwrap();
    let outcome = run.complete(vec![]).unwrap();
    store.complete_workflow_task(&lease, outcome, 4).unwrap();
    let tail = store.history(lease.run_key, 2).unwrap().to_vec();
    assert_eq!(tail.len(), 3, "two signals then the boundary");
    run.add_events(tail).unwrap();
    assert!(store.poll_workflow_task("q", 5, LEASE).is_some());
    let activation = run.next_activation(5, true).unwrap().unwrap();
    assert_eq!(activation.jobs.len(), 2);
    assert!(store.poll_workflow_task("q", 5, LEASE).is_none());
}

#[test]
fn an_expired_workflow_task_lease_is_redispatched_and_the_old_holder_is_fenced() {
    let mut store = MemoryStore::default();
    start(&mut store, "w", 0);
    let first = store.poll_workflow_task("q", 0, LEASE).unwrap();
    assert!(store.poll_workflow_task("q", 500, LEASE).is_none());
    store.tick(1_001);
    let second = store.poll_workflow_task("q", 1_001, LEASE).unwrap();
    assert_ne!(first.token, second.token);
    let outcome = vec![boundary(1)];
    assert!(matches!(
        store.complete_workflow_task(&first, outcome.clone(), 1_002),
        Err(CoreError::StaleTask(_))
    ));
    store
        .complete_workflow_task(&second, outcome, 1_002)
        .unwrap();
}

#[test]
fn a_lease_past_its_deadline_cannot_commit_even_before_a_tick() {
    let mut store = MemoryStore::default();
    start(&mut store, "w", 0);
    let lease = store.poll_workflow_task("q", 0, LEASE).unwrap();
    assert!(matches!(
        store.complete_workflow_task(&lease, vec![boundary(1)], 1_001),
        Err(CoreError::StaleTask(_))
    ));
}

#[test]
fn failed_workflow_tasks_retry_with_growing_delay() {
    let mut store = MemoryStore::default();
    start(&mut store, "w", 0);
    let lease = store.poll_workflow_task("q", 0, LEASE).unwrap();
    store
        .fail_workflow_task(lease.run_key, lease.token, "boom", 10)
        .unwrap();
    assert_eq!(
        store.describe("w").unwrap().last_task_failure.as_deref(),
        Some("boom")
    );
    assert!(store.poll_workflow_task("q", 1_009, LEASE).is_none());
    let lease = store.poll_workflow_task("q", 1_010, LEASE).unwrap();
    store
        .fail_workflow_task(lease.run_key, lease.token, "boom", 1_010)
        .unwrap();
    assert!(
        store.poll_workflow_task("q", 3_009, LEASE).is_none(),
        "2 s after the second"
    );
    assert!(store.poll_workflow_task("q", 3_010, LEASE).is_some());
}

#[test]
fn timers_fire_when_due() {
    let mut store = MemoryStore::default();
    let key = start(&mut store, "w", 0);
    let mut run = WorkflowRun::new();
    workflow_task(
        &mut store,
        &mut run,
        0,
        vec![Command::StartTimer {
            seq: 1,
            duration_ms: 3_600_000,
        }],
    );
    assert_eq!(store.next_wakeup_ms(0), Some(3_600_000));
    assert_eq!(store.tick(3_599_999), 0);
    assert!(store.poll_workflow_task("q", 3_599_999, LEASE).is_none());
    assert_eq!(store.tick(3_600_000), 1);
    assert!(matches!(
        last_event(&store, key),
        EventAttributes::TimerFired {
            started_event_id: 3
        }
    ));
    let jobs = workflow_task(
        &mut store,
        &mut run,
        3_600_000,
        vec![complete_workflow("1")],
    );
    assert_eq!(jobs, vec![Job::FireTimer { seq: 1 }]);
}

#[test]
fn a_cancelled_timer_never_fires() {
    let mut store = MemoryStore::default();
    let key = start(&mut store, "w", 0);
    let mut run = WorkflowRun::new();
    let timer = Command::StartTimer {
        seq: 1,
        duration_ms: 100,
    };
    workflow_task(&mut store, &mut run, 0, vec![timer]);
    store.signal_workflow("w", "s", payload("1"), 10).unwrap();
    workflow_task(
        &mut store,
        &mut run,
        10,
        vec![Command::CancelTimer { seq: 1 }],
    );
    assert_eq!(store.tick(1_000), 0);
    assert!(matches!(
        last_event(&store, key),
        EventAttributes::TimerCanceled { .. }
    ));
}

fn run_one_activity(options: ActivityOptions) -> (MemoryStore, WorkflowRun, i64) {
    let mut store = MemoryStore::default();
    let key = start(&mut store, "w", 0);
    let mut run = WorkflowRun::new();
    workflow_task(&mut store, &mut run, 0, vec![schedule_with(1, options)]);
    (store, run, key)
}

#[test]
fn failed_attempts_retry_with_backoff_then_fail_with_the_attempt_count() {
    let policy = RetryPolicy {
        initial_interval_ms: 100,
        backoff_coefficient: 2.0,
        maximum_interval_ms: None,
        maximum_attempts: 3,
        non_retryable_error_types: vec![],
    };
    let (mut store, _run, key) = run_one_activity(options_with(|o| o.retry_policy = policy));
    let failure = Failure::new("boom", "ValueError");
    let first = store.poll_activity_task("q", 0).unwrap();
    store
        .fail_activity_task(first.key, first.token, failure.clone(), 0)
        .unwrap();
    assert!(store.poll_activity_task("q", 99).is_none(), "backing off");
    let second = store.poll_activity_task("q", 100).unwrap();
    assert_eq!(second.attempt, 2);
    store
        .fail_activity_task(second.key, second.token, failure.clone(), 100)
        .unwrap();
    assert!(store.poll_activity_task("q", 299).is_none());
    let third = store.poll_activity_task("q", 300).unwrap();
    assert_eq!(third.attempt, 3);
    store
        .fail_activity_task(third.key, third.token, failure, 300)
        .unwrap();
    match last_event(&store, key) {
        EventAttributes::ActivityFailed {
            attempt, failure, ..
        } => {
            assert_eq!(attempt, 3);
            assert_eq!(failure.message, "boom");
        }
        other => panic!("{other:?}"),
    }
    // Attempts add no events: started, boundary, scheduled, failed.
    assert_eq!(store.history(key, 1).unwrap().len(), 4);
}

#[test]
fn non_retryable_failures_are_recorded_at_once() {
    let policy = RetryPolicy {
        non_retryable_error_types: vec!["Fatal".into()],
        ..RetryPolicy::default()
    };
    let (mut store, _run, key) = run_one_activity(options_with(|o| o.retry_policy = policy));
    let attempt = store.poll_activity_task("q", 0).unwrap();
    store
        .fail_activity_task(attempt.key, attempt.token, Failure::new("x", "Fatal"), 1)
        .unwrap();
    assert!(matches!(
        last_event(&store, key),
        EventAttributes::ActivityFailed { attempt: 1, .. }
    ));
}

#[test]
fn start_to_close_timeout_retries_and_fences_the_late_attempt() {
    let policy = RetryPolicy {
        initial_interval_ms: 10,
        maximum_attempts: 2,
        ..RetryPolicy::default()
    };
    let (mut store, _run, key) = run_one_activity(options_with(|o| {
        o.start_to_close_ms = Some(1_000);
        o.retry_policy = policy;
    }));
    let first = store.poll_activity_task("q", 0).unwrap();
    assert_eq!(first.deadline_ms, Some(1_000));
    store.tick(1_000);
    assert!(matches!(
        store.complete_activity_task(first.key, first.token, payload("1"), 1_001),
        Err(CoreError::StaleTask(_))
    ));
    let second = store.poll_activity_task("q", 1_010).unwrap();
    assert_eq!(second.attempt, 2);
    store.tick(2_010);
    match last_event(&store, key) {
        EventAttributes::ActivityTimedOut {
            timeout_type,
            attempt,
            ..
        } => assert_eq!((timeout_type, attempt), (TimeoutType::StartToClose, 2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn heartbeats_keep_an_attempt_alive_and_carry_details_to_the_next() {
    let policy = RetryPolicy {
        initial_interval_ms: 1,
        ..RetryPolicy::default()
    };
    let (mut store, _run, _key) = run_one_activity(options_with(|o| {
        o.heartbeat_ms = Some(100);
        o.retry_policy = policy;
    }));
    let first = store.poll_activity_task("q", 0).unwrap();
    for now in [90, 180, 270] {
        store
            .heartbeat_activity_task(first.key, first.token, payload(&now.to_string()), now)
            .unwrap();
        store.tick(now);
    }
    store.tick(369);
    assert!(store.poll_activity_task("q", 369).is_none(), "still alive");
    store.tick(370);
    assert!(store
        .heartbeat_activity_task(first.key, first.token, payload("late"), 371)
        .is_err());
    let second = store.poll_activity_task("q", 371).unwrap();
    assert_eq!(second.attempt, 2);
    assert_eq!(second.heartbeat_details, payload("270"));
}

#[test]
fn schedule_to_start_and_schedule_to_close_timeouts_are_final() {
    let (mut store, _run, key) =
        run_one_activity(options_with(|o| o.schedule_to_start_ms = Some(50)));
    store.tick(50);
    assert!(matches!(
        last_event(&store, key),
        EventAttributes::ActivityTimedOut {
            timeout_type: TimeoutType::ScheduleToStart,
            ..
        }
    ));
    assert!(store.poll_activity_task("q", 51).is_none());

    let (mut store, _run, key) = run_one_activity(options_with(|o| {
        o.start_to_close_ms = None;
        o.schedule_to_close_ms = Some(500);
    }));
    let attempt = store.poll_activity_task("q", 0).unwrap();
    assert_eq!(attempt.deadline_ms, Some(500));
    store.tick(500);
    assert!(matches!(
        last_event(&store, key),
        EventAttributes::ActivityTimedOut {
            timeout_type: TimeoutType::ScheduleToClose,
            ..
        }
    ));
}

#[test]
fn cancelling_an_activity_resolves_it_and_refuses_its_late_result() {
    let (mut store, mut run, key) = run_one_activity(options());
    let attempt = store.poll_activity_task("q", 0).unwrap();
    store
        .signal_workflow("w", "cancel-it", payload("1"), 1)
        .unwrap();
    workflow_task(
        &mut store,
        &mut run,
        2,
        vec![Command::RequestCancelActivity { seq: 1 }],
    );
    assert!(matches!(
        last_event(&store, key),
        EventAttributes::ActivityCanceled { .. }
    ));
    assert!(store
        .heartbeat_activity_task(attempt.key, attempt.token, Payload::default(), 3)
        .is_err());
    assert!(store
        .complete_activity_task(attempt.key, attempt.token, payload("1"), 3)
        .is_err());
    let jobs = workflow_task(&mut store, &mut run, 4, vec![complete_workflow("1")]);
    assert!(matches!(jobs[..], [Job::ResolveActivity { seq: 1, .. }]));
}

#[test]
fn terminate_and_cancel_requests() {
    let (mut store, _run, key) = run_one_activity(options());
    store.request_cancel_workflow("w", "please", 1).unwrap();
    store.request_cancel_workflow("w", "again", 2).unwrap();
    let cancel_requests = store
        .history(key, 1)
        .unwrap()
        .iter()
        .filter(|event| {
            matches!(
                event.attributes,
                EventAttributes::WorkflowCancelRequested { .. }
            )
        })
        .count();
    assert_eq!(cancel_requests, 1, "a second request is a no-op");
    store.terminate_workflow("w", "stop", 3).unwrap();
    assert_eq!(store.describe("w").unwrap().status, RunStatus::Terminated);
    assert!(
        store.poll_activity_task("q", 4).is_none(),
        "a closed run's tasks are dropped"
    );
    assert!(store.poll_workflow_task("q", 4, LEASE).is_none());
    assert!(matches!(
        store.signal_workflow("w", "s", payload("1"), 5),
        Err(CoreError::WorkflowNotRunning(_))
    ));
    assert!(matches!(
        store.signal_workflow("nope", "s", payload("1"), 5),
        Err(CoreError::WorkflowNotFound(_))
    ));
}

#[test]
fn workflow_ids_are_unique_while_running_and_reusable_after() {
    let mut store = MemoryStore::default();
    start(&mut store, "w", 0);
    assert!(matches!(
        store.start_workflow("w", "r2", "wf", "q", payload("null"), 1),
        Err(CoreError::WorkflowAlreadyStarted(_))
    ));
    store.terminate_workflow("w", "", 2).unwrap();
    store
        .start_workflow("w", "r3", "wf", "q", payload("null"), 3)
        .unwrap();
    assert_eq!(store.describe("w").unwrap().run_id, "r3");
    assert_eq!(store.list(None, usize::MAX, None, None).len(), 2);
}

#[test]
fn outcomes_must_start_with_their_boundary() {
    let mut store = MemoryStore::default();
    start(&mut store, "w", 0);
    let lease = store.poll_workflow_task("q", 0, LEASE).unwrap();
    assert!(matches!(
        store.complete_workflow_task(&lease, vec![scheduled(1, "a")], 1),
        Err(CoreError::InvalidCommand(_))
    ));
    assert!(matches!(
        store.complete_workflow_task(&lease, vec![boundary(9)], 1),
        Err(CoreError::InvalidCommand(_))
    ));
}

#[test]
fn activity_tasks_are_handed_out_per_task_queue_in_ready_order() {
    let mut store = MemoryStore::default();
    start(&mut store, "w", 0);
    let mut run = WorkflowRun::new();
    let other = options_with(|o| o.task_queue = "other".into());
    workflow_task(
        &mut store,
        &mut run,
        0,
        vec![
            schedule(1, "first"),
            schedule_with(2, other),
            schedule(3, "third"),
        ],
    );
    assert_eq!(
        store.poll_activity_task("q", 0).unwrap().activity_type,
        "first"
    );
    assert_eq!(
        store.poll_activity_task("q", 0).unwrap().activity_type,
        "third"
    );
    assert!(store.poll_activity_task("q", 0).is_none());
    assert_eq!(
        store.poll_activity_task("other", 0).unwrap().activity_type,
        "act"
    );
}

#[test]
fn effects_never_split_a_tasks_commands_nor_follow_its_end() {
    use mainspring_core::history::validate_history;
    // Cancel an activity and start a timer in one task: the cancellation is recorded after
    // both commands, and the whole history replays.
    let (mut store, mut run, key) = run_one_activity(options());
    store.signal_workflow("w", "go", payload("1"), 1).unwrap();
    workflow_task(
        &mut store,
        &mut run,
        2,
        vec![
            Command::RequestCancelActivity { seq: 1 },
            Command::StartTimer {
                seq: 1,
                duration_ms: 5,
            },
        ],
    );
    let kinds: Vec<&str> = store
        .history(key, 5)
        .unwrap()
        .iter()
        .map(|event| event.attributes.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            "WorkflowTaskCompleted",
            "ActivityCancelRequested",
            "TimerStarted",
            "ActivityCanceled"
        ]
    );
    replay_recorded(store.history(key, 1).unwrap().to_vec()).unwrap();

    // Cancel and complete in one task: nothing is recorded after the completion.
    let (mut store, mut run, key) = run_one_activity(options());
    store.signal_workflow("w", "go", payload("1"), 1).unwrap();
    workflow_task(
        &mut store,
        &mut run,
        2,
        vec![
            Command::RequestCancelActivity { seq: 1 },
            complete_workflow("1"),
        ],
    );
    let events = store.history(key, 1).unwrap().to_vec();
    assert!(matches!(
        events.last().unwrap().attributes,
        EventAttributes::WorkflowCompleted { .. }
    ));
    validate_history(&events).unwrap();
    replay_recorded(events).unwrap();
    assert!(store.poll_activity_task("q", 3).is_none());
}

#[test]
fn a_task_is_recorded_at_the_time_its_code_saw_and_replay_sees_it_again() {
    let mut store = MemoryStore::default();
    let run_key = start(&mut store, "w", 1_000);
    let lease = store.poll_workflow_task("q", 1_000, LEASE).unwrap();
    let mut run = WorkflowRun::new();
    run.add_events(store.history(run_key, 1).unwrap().to_vec())
        .unwrap();
    let live = run.next_activation(1_250, true).unwrap().unwrap();
    assert_eq!((live.now_ms, run.live_now_ms()), (1_250, Some(1_250)));
    let outcome = run
        .complete(vec![Command::CompleteWorkflow {
            result: payload("1"),
        }])
        .unwrap();
    assert_eq!(run.live_now_ms(), None);
    // Committed later than the code ran: the events keep the code's time.
    store
        .complete_workflow_task_at(&lease, outcome, 1_900, 1_250)
        .unwrap();
    let history = store.history(run_key, 1).unwrap().to_vec();
    assert_eq!(history[1].timestamp_ms, 1_250);
    let mut replayed = WorkflowRun::new();
    replayed.add_events(history).unwrap();
    let again = replayed.next_activation(5_000, true).unwrap().unwrap();
    assert!(again.replaying);
    assert_eq!(again.now_ms, 1_250);
}

#[test]
fn a_tick_applies_the_earliest_batch_of_due_deadlines() {
    let mut store = MemoryStore::new(mainspring_core::rules::RulesConfig {
        tick_batch: 10,
        ..Default::default()
    });
    let mut runs = Vec::new();
    for index in 0..25u64 {
        let key = start(&mut store, &format!("w{index}"), 0);
        let mut run = WorkflowRun::new();
        // Timers due at 1_000 + 25 * index: the tick must take them in that order.
        workflow_task(
            &mut store,
            &mut run,
            0,
            vec![Command::StartTimer {
                seq: 1,
                duration_ms: 1_000 + 25 * index,
            }],
        );
        runs.push(key);
    }
    let fired = |store: &MemoryStore| {
        runs.iter()
            .map(|&key| matches!(last_event(store, key), EventAttributes::TimerFired { .. }))
            .collect::<Vec<bool>>()
    };
    assert_eq!(store.tick(10_000), 10);
    let after_one = fired(&store);
    assert!(
        after_one[..10].iter().all(|&fired| fired) && after_one[10..].iter().all(|&fired| !fired)
    );
    assert_eq!(store.tick(10_000), 10);
    assert_eq!(store.tick(10_000), 5);
    assert_eq!(store.tick(10_000), 0);
    assert!(fired(&store).into_iter().all(|fired| fired));
}
