//! The replay state machine: live activations, replay, non-determinism, task boundaries.

mod common;

use common::*;
use mainspring_core::history::EventAttributes;
use mainspring_core::replay::{ActivityResolution, Command, Job, WorkflowRun};
use mainspring_core::CoreError;

#[test]
fn live_run_hands_out_jobs_and_learns_its_committed_events() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started()])).unwrap();
    let activation = run.next_activation(5_000, true).unwrap().unwrap();
    assert!(!activation.replaying);
    assert_eq!(activation.now_ms, 5_000);
    assert!(matches!(activation.jobs[..], [Job::StartWorkflow { .. }]));
    let outcome = run.complete(vec![schedule(1, "charge")]).unwrap();
    assert_eq!(outcome, vec![boundary(1), scheduled(1, "charge")]);
    // Nothing new until the store hands back what it committed plus the result.
    run.add_events(
        history(vec![
            started(),
            boundary(1),
            scheduled(1, "charge"),
            completed(3, "\"r\""),
        ])
        .split_off(1),
    )
    .unwrap();
    let activation = run.next_activation(6_000, true).unwrap().unwrap();
    assert!(!activation.replaying);
    match &activation.jobs[..] {
        [Job::ResolveActivity {
            seq: 1,
            attempt: 1,
            resolution: ActivityResolution::Completed { result },
        }] => assert_eq!(result.0, b"\"r\""),
        other => panic!("unexpected jobs {other:?}"),
    }
    let outcome = run.complete(vec![complete_workflow("1")]).unwrap();
    assert_eq!(outcome.len(), 2);
    assert!(run.is_closed());
}

#[test]
fn no_activation_without_new_inbound_events() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started(), boundary(1), scheduled(1, "a")]))
        .unwrap();
    let replayed = run.next_activation(0, true).unwrap().unwrap();
    assert!(replayed.replaying);
    run.complete(vec![schedule(1, "a")]).unwrap();
    assert_eq!(run.next_activation(0, true).unwrap(), None);
}

#[test]
fn replay_of_a_recorded_history_matches() {
    let run = replay_recorded(sequential_activities(50)).unwrap();
    assert!(run.is_closed());
}

#[test]
fn replay_uses_the_recorded_task_time() {
    let mut run = WorkflowRun::new();
    run.add_events(sequential_activities(2)).unwrap();
    let activation = run.next_activation(999_999, true).unwrap().unwrap();
    assert_eq!(
        activation.now_ms, 1_001,
        "the boundary's timestamp, not the caller's clock"
    );
}

#[test]
fn a_different_command_is_non_determinism_naming_both() {
    let mut run = WorkflowRun::new();
    run.add_events(sequential_activities(3)).unwrap();
    run.next_activation(0, true).unwrap();
    let error = run.complete(vec![schedule(1, "refund")]).unwrap_err();
    match &error {
        CoreError::NonDeterminism {
            event_id,
            recorded,
            issued,
        } => {
            assert_eq!(*event_id, 3);
            assert_eq!(recorded, "ScheduleActivity(seq=1, type=step)");
            assert_eq!(issued, "ScheduleActivity(seq=1, type=refund)");
        }
        other => panic!("expected non-determinism, got {other:?}"),
    }
    assert!(error.to_string().starts_with("[MS1100]"));
}

#[test]
fn a_missing_or_extra_command_is_non_determinism() {
    let mut run = WorkflowRun::new();
    run.add_events(sequential_activities(3)).unwrap();
    run.next_activation(0, true).unwrap();
    let error = run.complete(vec![]).unwrap_err();
    assert!(
        matches!(error, CoreError::NonDeterminism { event_id: 3, ref issued, .. } if issued == "no command")
    );

    let mut run = WorkflowRun::new();
    run.add_events(sequential_activities(3)).unwrap();
    run.next_activation(0, true).unwrap();
    let error = run
        .complete(vec![
            schedule(1, "step"),
            Command::StartTimer {
                seq: 1,
                duration_ms: 5,
            },
        ])
        .unwrap_err();
    match error {
        CoreError::NonDeterminism {
            event_id,
            recorded,
            issued,
        } => {
            assert_eq!(
                event_id, 2,
                "names the task boundary the extra command belongs to"
            );
            assert!(recorded.contains("no further command"));
            assert_eq!(issued, "StartTimer(seq=1, duration_ms=5)");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_signal_that_arrived_mid_task_goes_to_the_next_activation_on_replay() {
    // Task 1 saw only event 1; the signal (event 2) landed while it ran.
    let events = history(vec![
        started(),
        EventAttributes::WorkflowSignaled {
            signal_name: "go".into(),
            input: payload("1"),
        },
        boundary(1),
        EventAttributes::TimerStarted {
            seq: 1,
            duration_ms: 10,
        },
        boundary(2),
        EventAttributes::WorkflowCompleted {
            result: payload("1"),
        },
    ]);
    let mut run = WorkflowRun::new();
    run.add_events(events).unwrap();
    let first = run.next_activation(0, true).unwrap().unwrap();
    assert!(matches!(first.jobs[..], [Job::StartWorkflow { .. }]));
    run.complete(vec![Command::StartTimer {
        seq: 1,
        duration_ms: 10,
    }])
    .unwrap();
    let second = run.next_activation(0, true).unwrap().unwrap();
    assert!(matches!(&second.jobs[..], [Job::Signal { name, .. }] if name == "go"));
    run.complete(vec![complete_workflow("1")]).unwrap();
    assert!(run.is_closed());
}

#[test]
fn live_commit_with_a_signal_in_between_is_recognised() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started()])).unwrap();
    run.next_activation(0, true).unwrap();
    run.complete(vec![schedule(1, "a")]).unwrap();
    // The store committed after a signal landed: ids shift by one.
    let committed = history(vec![
        started(),
        EventAttributes::WorkflowSignaled {
            signal_name: "s".into(),
            input: payload("1"),
        },
        boundary(1),
        scheduled(1, "a"),
    ]);
    run.add_events(committed[1..].to_vec()).unwrap();
    let activation = run.next_activation(0, true).unwrap().unwrap();
    assert!(!activation.replaying);
    assert!(matches!(&activation.jobs[..], [Job::Signal { .. }]));
    // The activity is known under its real id (4): cancelling it names that event.
    let outcome = run
        .complete(vec![Command::RequestCancelActivity { seq: 1 }])
        .unwrap();
    assert_eq!(
        outcome[1],
        EventAttributes::ActivityCancelRequested {
            scheduled_event_id: 4
        }
    );
}

#[test]
fn a_missing_own_commit_is_an_error_not_a_silent_replay() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started()])).unwrap();
    run.next_activation(0, true).unwrap();
    run.complete(vec![schedule(1, "a")]).unwrap();
    assert!(matches!(
        run.next_activation(0, true),
        Err(CoreError::InvalidHistory { .. })
    ));
}

#[test]
fn timers_fire_and_cancel() {
    let events = history(vec![
        started(),
        boundary(1),
        EventAttributes::TimerStarted {
            seq: 1,
            duration_ms: 10,
        },
        EventAttributes::TimerStarted {
            seq: 2,
            duration_ms: 20,
        },
        EventAttributes::TimerFired {
            started_event_id: 3,
        },
        boundary(5),
        EventAttributes::TimerCanceled {
            started_event_id: 4,
        },
    ]);
    let mut run = WorkflowRun::new();
    run.add_events(events).unwrap();
    run.next_activation(0, true).unwrap();
    run.complete(vec![
        Command::StartTimer {
            seq: 1,
            duration_ms: 10,
        },
        Command::StartTimer {
            seq: 2,
            duration_ms: 20,
        },
    ])
    .unwrap();
    let activation = run.next_activation(0, true).unwrap().unwrap();
    assert_eq!(activation.jobs, vec![Job::FireTimer { seq: 1 }]);
    run.complete(vec![
        Command::CancelTimer { seq: 2 },
        // Cancelling a timer that already fired is a no-op, not a command.
        Command::CancelTimer { seq: 1 },
    ])
    .unwrap();
}

#[test]
fn invalid_commands_are_typed_errors() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started()])).unwrap();
    run.next_activation(0, true).unwrap();
    assert!(matches!(
        run.complete(vec![Command::CancelTimer { seq: 7 }]),
        Err(CoreError::InvalidCommand(_))
    ));
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started()])).unwrap();
    run.next_activation(0, true).unwrap();
    assert!(matches!(
        run.complete(vec![schedule(1, "a"), schedule(1, "b")]),
        Err(CoreError::InvalidCommand(_))
    ));
    // Completing twice, or asking twice, is a protocol error.
    let mut run = WorkflowRun::new();
    assert!(matches!(
        run.complete(vec![]),
        Err(CoreError::InvalidCommand(_))
    ));
    run.add_events(history(vec![started()])).unwrap();
    run.next_activation(0, true).unwrap();
    assert!(matches!(
        run.next_activation(0, true),
        Err(CoreError::InvalidCommand(_))
    ));
}

#[test]
fn commands_after_a_terminal_command_are_dropped() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started()])).unwrap();
    run.next_activation(0, true).unwrap();
    let outcome = run
        .complete(vec![complete_workflow("1"), schedule(1, "late")])
        .unwrap();
    assert_eq!(outcome.len(), 2, "boundary and completion only");
}

#[test]
fn terminated_run_has_no_further_activation() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![
        started(),
        EventAttributes::WorkflowTerminated { reason: "r".into() },
    ]))
    .unwrap();
    assert_eq!(run.next_activation(0, true).unwrap(), None);
    assert!(run.is_closed());
}

#[test]
fn ids_must_continue_densely() {
    let mut run = WorkflowRun::new();
    let mut events = history(vec![started()]);
    events[0].event_id = 2;
    assert!(matches!(
        run.add_events(events),
        Err(CoreError::InvalidHistory { .. })
    ));
}

#[test]
fn replay_of_a_long_history_completes() {
    let run = replay_recorded(sequential_activities(10_000)).unwrap();
    assert_eq!(run.history_length(), 30_003);
}

#[test]
fn replay_hands_each_task_the_flags_it_was_recorded_with() {
    use mainspring_core::history::flags::ENGINE_FLAGS;
    let mut run = WorkflowRun::new();
    // The first task recorded by an engine before flags (0), the second by this one.
    run.add_events(history(vec![
        started(),
        boundary_with_flags(1, 0),
        scheduled(1, "a"),
        completed(3, "1"),
        boundary(4),
        scheduled(2, "b"),
    ]))
    .unwrap();
    let first = run.next_activation(0, true).unwrap().unwrap();
    assert_eq!((first.replaying, first.flags), (true, 0));
    run.complete(vec![schedule(1, "a")]).unwrap();
    let second = run.next_activation(0, true).unwrap().unwrap();
    assert_eq!((second.replaying, second.flags), (true, ENGINE_FLAGS));
}

#[test]
fn a_history_with_flags_from_a_newer_engine_is_refused_on_load() {
    let mut run = WorkflowRun::new();
    let error = run
        .add_events(history(vec![started(), boundary_with_flags(1, 1 << 40)]))
        .unwrap_err();
    assert!(
        matches!(error, CoreError::UnsupportedHistory(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("0x10000000000"), "{error}");
}

#[test]
fn a_tail_that_breaks_the_history_is_refused_on_load() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started(), boundary(1), scheduled(1, "a")]))
        .unwrap();
    // Completes an activity that was never scheduled: event 9.
    let mut tail = history(vec![
        started(),
        boundary(1),
        scheduled(1, "a"),
        completed(9, "1"),
    ]);
    let error = run.add_events(tail.split_off(3)).unwrap_err();
    assert!(
        matches!(error, CoreError::InvalidHistory { event_id: 4, .. }),
        "{error:?}"
    );
}

#[test]
fn replay_keeps_only_the_events_it_still_needs() {
    let run = replay_recorded(sequential_activities(10_000)).unwrap();
    assert_eq!(run.history_length(), 30_003);
    assert!(
        run.retained_events().len() < 10,
        "kept {} events",
        run.retained_events().len()
    );
}

/// A live run fed one step at a time (as a cached instance is) keeps a bounded number of
/// events however long its history grows, and a timer started at the beginning still fires
/// at the end: what later events refer to outlives the events dropped.
#[test]
fn a_long_live_run_keeps_bounded_events_and_still_resolves_early_commands() {
    let mut run = WorkflowRun::new();
    run.add_events(history(vec![started()])).unwrap();
    run.next_activation(0, true).unwrap().unwrap();
    run.complete(vec![
        Command::StartTimer {
            seq: 1,
            duration_ms: 60_000,
        },
        schedule(1, "step"),
    ])
    .unwrap();
    let mut all = history(vec![
        started(),
        boundary(1),
        EventAttributes::TimerStarted {
            seq: 1,
            duration_ms: 60_000,
        },
        scheduled(1, "step"),
        completed(4, "\"ok\""),
    ]);
    run.add_events(all.split_off(1)).unwrap();
    let mut next_id = 6;
    let mut most_kept = 0;
    let tail =
        |id: &mut u64, attributes: Vec<EventAttributes>| -> Vec<mainspring_core::history::Event> {
            attributes
                .into_iter()
                .map(|attributes| {
                    let event = mainspring_core::history::Event {
                        event_id: *id,
                        timestamp_ms: 2_000,
                        attributes,
                    };
                    *id += 1;
                    event
                })
                .collect()
        };
    for seq in 2..=500u32 {
        let activation = run.next_activation(0, true).unwrap().unwrap();
        assert!(
            matches!(activation.jobs[..], [Job::ResolveActivity { seq: resolved, .. }] if resolved == seq - 1)
        );
        run.complete(vec![schedule(seq, "step")]).unwrap();
        let seen = next_id - 1;
        let scheduled_id = next_id + 1;
        let events = tail(
            &mut next_id,
            vec![
                boundary(seen),
                scheduled(seq, "step"),
                completed(scheduled_id, "\"ok\""),
            ],
        );
        run.add_events(events).unwrap();
        most_kept = most_kept.max(run.retained_events().len());
    }
    assert!(most_kept <= 8, "kept up to {most_kept} events");
    run.next_activation(0, true).unwrap().unwrap();
    run.complete(vec![]).unwrap();
    let seen = next_id - 1;
    let events = tail(
        &mut next_id,
        vec![
            boundary(seen),
            EventAttributes::TimerFired {
                started_event_id: 3,
            },
        ],
    );
    run.add_events(events).unwrap();
    let activation = run.next_activation(0, true).unwrap().unwrap();
    assert!(matches!(activation.jobs[..], [Job::FireTimer { seq: 1 }]));
    assert_eq!(run.history_length(), next_id - 1);
}
