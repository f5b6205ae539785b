//! The native store against real SQLite files: migrations, group commit, fencing, the executor
//! thread. (`tests/test_storage_conformance.py` runs the whole storage contract through Python.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use mainspring_core::history::{
    encode_events, ActivityOptions, Event, EventAttributes, Payload, RetryPolicy,
};
use mainspring_core::rules::RulesConfig;
use mainspring_core::CoreError;
use mainspring_sqlite::{
    open, run_group, Eager, Executor, NewRun, Operation, Output, Request, SlotPool, StoreError,
    SCHEMA_VERSION,
};

fn fresh_path(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let folder = std::env::temp_dir().join(format!(
        "mainspring-sqlite-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&folder).unwrap();
    folder.join(name)
}

/// A store on a new file of its own.
fn fresh_store(name: &str, synchronous: &str, config: RulesConfig) -> mainspring_sqlite::Store {
    open(
        fresh_path(name).to_str().unwrap(),
        1_000,
        synchronous,
        config,
        "test",
    )
    .unwrap()
}

fn start(workflow_id: &str, eager_lease_ms: Option<i64>) -> Request {
    Request {
        now: 1_000,
        operation: Operation::StartWorkflow {
            run: NewRun {
                workflow_id: workflow_id.into(),
                run_id: format!("{workflow_id}-run"),
                workflow_type: "flow".into(),
                task_queue: "q".into(),
            },
            input: b"null".to_vec(),
            eager_lease_ms,
        },
    }
}

fn count(store: &mainspring_sqlite::Store, table: &str) -> i64 {
    store
        .connection
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
}

/// A first task's outcome: it saw event 1 and schedules one activity on queue "q".
fn schedules_an_activity() -> Vec<u8> {
    let event = |attributes| Event {
        event_id: 0,
        timestamp_ms: 0,
        attributes,
    };
    encode_events(&[
        event(EventAttributes::WorkflowTaskCompleted {
            seen_event_id: 1,
            flags: 0,
            dropped_signals: 0,
        }),
        event(EventAttributes::ActivityScheduled {
            seq: 1,
            activity_type: "charge".into(),
            input: Payload(b"1".to_vec()),
            options: Box::new(ActivityOptions {
                task_queue: "q".into(),
                schedule_to_close_ms: None,
                schedule_to_start_ms: None,
                start_to_close_ms: Some(5_000),
                heartbeat_ms: None,
                retry_policy: RetryPolicy::default(),
            }),
        }),
    ])
}

#[test]
fn opening_migrates_once_and_a_newer_schema_is_refused() {
    let path = fresh_path("schema.db");
    let path = path.to_str().unwrap();
    let store = open(path, 1_000, "FULL", RulesConfig::default(), "test").unwrap();
    let version: String = store
        .connection
        .query_row(
            "SELECT value FROM mainspring_meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    store
        .connection
        .execute(
            "UPDATE mainspring_meta SET value = ? WHERE key = 'schema_version'",
            [(SCHEMA_VERSION + 1).to_string()],
        )
        .unwrap();
    drop(store);
    let refused = open(path, 1_000, "FULL", RulesConfig::default(), "test")
        .err()
        .expect("a newer schema is refused");
    assert!(
        refused.to_string().contains("newer Mainspring"),
        "{refused}"
    );
}

#[test]
fn a_failing_operation_is_undone_alone() {
    let mut store = fresh_store("group.db", "FULL", RulesConfig::default());
    let results = run_group(
        &mut store,
        &[start("a", None), start("a", None), start("b", None)],
    );
    assert!(matches!(results[0], Ok(Output::Lease(None))));
    assert!(matches!(
        results[1],
        Err(StoreError::Core(CoreError::WorkflowAlreadyStarted(_)))
    ));
    assert!(matches!(results[2], Ok(Output::Lease(None))));
    assert_eq!((count(&store, "runs"), count(&store, "events")), (2, 2));
}

#[test]
fn a_task_commit_is_fenced_by_its_lease_and_hands_eager_activities_back() {
    let mut store = fresh_store("fenced.db", "NORMAL", RulesConfig::default());
    let [Ok(Output::Lease(Some(lease)))] = &run_group(&mut store, &[start("w", Some(10_000))])[..]
    else {
        panic!("an eager start leases the first task")
    };
    let complete = |token| Request {
        now: 2_000,
        operation: Operation::CompleteWorkflowTask {
            run_key: lease.lease.run_key,
            token,
            outcome: Some(schedules_an_activity()),
            leased_length: 1,
            eager: Eager {
                queue: Some("q".into()),
                slots: 1,
                pool: None,
            },
        },
    };
    let stale = run_group(&mut store, &[complete(lease.lease.token + 1)]);
    assert!(matches!(
        stale[..],
        [Err(StoreError::Core(CoreError::StaleTask(_)))]
    ));
    assert_eq!(count(&store, "activities"), 0);
    let [Ok(Output::Committed(committed))] =
        &run_group(&mut store, &[complete(lease.lease.token)])[..]
    else {
        panic!("the lease holder commits")
    };
    assert_eq!(committed.history_length, 3);
    assert_eq!(committed.leases.len(), 1);
    let activity = &committed.leases[0];
    assert_eq!(
        (
            activity.activity_type.as_str(),
            activity.attempt,
            activity.key.1
        ),
        ("charge", 1, 3)
    );
    assert_eq!(activity.deadline_ms, Some(7_000)); // start-to-close from the commit
    assert!(!committed.wakes_pollers); // the attempt went to the caller, not to a queue
    let state: i64 = store
        .connection
        .query_row("SELECT state FROM activities", [], |row| row.get(0))
        .unwrap();
    assert_eq!(state, 1); // running
                          // A second commit with the same lease is stale: the task is done.
    assert!(matches!(
        run_group(&mut store, &[complete(lease.lease.token)])[..],
        [Err(StoreError::Core(CoreError::StaleTask(_)))]
    ));
}

#[test]
fn the_executor_runs_groups_on_its_thread_and_closing_waits_for_them() {
    let store = fresh_store("executor.db", "FULL", RulesConfig::default());
    let executor = Executor::new(store).unwrap();
    executor
        .submit(7, vec![start("x", None), start("y", None)])
        .unwrap();
    executor.submit(8, vec![start("x", None)]).unwrap();
    let mut finished = Vec::new();
    for _ in 0..5_000 {
        finished.extend(executor.collect());
        if finished.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let tickets: Vec<u64> = finished.iter().map(|(ticket, _)| *ticket).collect();
    assert_eq!(tickets, [7, 8]);
    assert!(finished[0].1.iter().all(Result::is_ok));
    assert!(matches!(
        finished[1].1[..],
        [Err(StoreError::Core(CoreError::WorkflowAlreadyStarted(_)))]
    ));
    executor.submit(9, vec![start("z", None)]).unwrap();
    executor.close(); // waits for group 9
    assert_eq!(executor.collect().len(), 1);
    assert!(matches!(
        executor.submit(10, vec![start("late", None)]),
        Err(StoreError::Closed)
    ));
}

/// A tick applies at most `tick_batch` due deadlines (here: lapsed leases), the earliest
/// first; the rest wait for the next poll, so one poll's transaction stays short however many
/// deadlines fall due at once.
#[test]
fn a_tick_applies_a_bounded_batch_of_due_deadlines() {
    let mut store = fresh_store(
        "tick.db",
        "NORMAL",
        RulesConfig {
            tick_batch: 10,
            ..RulesConfig::default()
        },
    );
    let starts: Vec<Request> = (0..25)
        .map(|index| start(&format!("w{index:02}"), Some(10)))
        .collect();
    for result in run_group(&mut store, &starts) {
        assert!(matches!(result, Ok(Output::Lease(Some(_)))));
    }
    let poll = |store: &mut mainspring_sqlite::Store| {
        let results = run_group(
            store,
            &[Request {
                now: 60_000,
                operation: Operation::PollWorkflowTasks {
                    task_queue: "other".into(),
                    lease_ms: 10_000,
                    max_tasks: 100,
                },
            }],
        );
        match &results[..] {
            [Ok(Output::WorkflowPoll(applied, _))] => *applied,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(poll(&mut store), 10);
    assert_eq!(poll(&mut store), 10);
    assert_eq!(poll(&mut store), 5);
    assert_eq!(poll(&mut store), 0);
}

/// An eager commit takes its attempts' slots from the caller's pool as it runs; when its group
/// rolls back (another operation of it failed) they go back, and the isolated re-run takes
/// them again: the pool ends up short by exactly the attempts leased, whatever the path.
#[test]
fn slots_taken_by_a_group_that_rolls_back_go_back() {
    use std::sync::Arc;
    let mut store = fresh_store("pool.db", "NORMAL", RulesConfig::default());
    let pool = Arc::new(SlotPool::new(2));
    let leases: Vec<_> = ["a", "b"]
        .iter()
        .map(
            |id| match &run_group(&mut store, &[start(id, Some(10_000))])[..] {
                [Ok(Output::Lease(Some(lease)))] => lease.lease.clone(),
                other => panic!("unexpected {other:?}"),
            },
        )
        .collect();
    let complete = |lease: &mainspring_core::rules::WorkflowTaskLease, token| Request {
        now: 2_000,
        operation: Operation::CompleteWorkflowTask {
            run_key: lease.run_key,
            token,
            outcome: Some(schedules_an_activity()),
            leased_length: 1,
            eager: Eager {
                queue: Some("q".into()),
                slots: 1,
                pool: Some(Arc::clone(&pool)),
            },
        },
    };
    // The second commit is stale: the group rolls back and runs again op by op.
    let results = run_group(
        &mut store,
        &[
            complete(&leases[0], leases[0].token),
            complete(&leases[1], leases[1].token + 1),
        ],
    );
    assert!(matches!(&results[0], Ok(Output::Committed(committed)) if committed.leases.len() == 1));
    assert!(matches!(
        results[1],
        Err(StoreError::Core(CoreError::StaleTask(_)))
    ));
    assert_eq!(pool.free(), 1, "one slot taken, by the one attempt leased");
    // With no slot free, a commit leases nothing and its attempt is queued for a poll.
    assert_eq!(pool.take(1), 1);
    let [Ok(Output::Committed(committed))] =
        &run_group(&mut store, &[complete(&leases[1], leases[1].token)])[..]
    else {
        panic!("the lease holder commits")
    };
    assert!(committed.leases.is_empty() && committed.wakes_pollers);
    assert!(pool.was_short());
    assert_eq!(pool.free(), 0);
}
