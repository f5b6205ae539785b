//! The hot statements find their rows by index: a test of `EXPLAIN QUERY PLAN`.
//!
//! Every statement a poll, a workflow-task commit, an activity's result or heartbeat,
//! `describe`, `result()` and `read_history` run is checked here, from the very constants the
//! operations prepare (so the test cannot drift from them). None may scan `runs`, `events`,
//! `activities`, `timers` or `queries` whole, nor build an automatic index: each table is
//! reached by a `SEARCH` on an index or key, or by a `SCAN` of one of the partial indexes that
//! hold queued or leased work only, which stay small however many runs the file keeps. Nor
//! may one sort its rows in a temporary B-tree: the index order is the order asked for. (A
//! `MIN` or `MAX` reads as a `SEARCH` in a plan even where it walks its index: those here
//! walk a work index, or read the first entry of `timers_due`.)
//!
//! `busy_and_wakeup` is left out on purpose: only time skipping (tests on a virtual clock)
//! calls it, once the worker is idle, and it counts every task ready or leased, so it reads
//! what it counts.

use rusqlite::Connection;

use crate::deadlines::{
    ANY_DUE_SQL, DUE_ACTIVITIES_SQL, DUE_LEASES_SQL, DUE_TIMERS_SQL, NEXT_WAKEUP_SQL,
};
use crate::polls::{
    ANSWER_QUERY_SQL, DELETE_QUERY_SQL, INSERT_QUERY_SQL, READY_ACTIVITY_TASKS_SQL,
    READY_WORKFLOW_TASKS_SQL, READ_ANSWER_SQL, TAKE_QUERY_SQL,
};
use crate::records::{
    CLOSE_NEW_RUN_SQL, DELETE_ACTIVITY_SQL, DELETE_RUN_ACTIVITIES_SQL, DELETE_RUN_TIMERS_SQL,
    DELETE_TIMER_SQL, INSERT_ACTIVITY_SQL, INSERT_EVENT_SQL, INSERT_RUN_SQL, INSERT_TIMER_SQL,
    LOAD_ACTIVITY_SQL, LOAD_CURRENT_RUN_SQL, LOAD_RUN_BY_ID_SQL, LOAD_RUN_SQL, LOAD_TIMER_SQL,
    UPDATE_ACTIVITY_SQL, UPDATE_OPEN_RUN_SQL, UPDATE_RUN_SQL,
};
use crate::runs::{
    CLOSING_EVENTS_SQL, CLOSING_EVENT_SQL, EVENT_ROWS_SQL, LEASE_IDENTITY_SQL,
    LIST_RUNS_OF_STATUS_AND_TYPE_SQL, LIST_RUNS_OF_STATUS_SQL, LIST_RUNS_OF_TYPE_SQL,
    LIST_RUNS_SQL,
};

/// The statements, by what runs them.
const HOT_STATEMENTS: &[(&str, &str)] = &[
    // Polls: the candidates, each lease persisted, the history tail handed out.
    ("ready workflow tasks", READY_WORKFLOW_TASKS_SQL),
    ("ready activity tasks", READY_ACTIVITY_TASKS_SQL),
    ("history rows", EVENT_ROWS_SQL),
    // Loads: every operation on a run, an activity or a timer (the tick's too).
    ("load run", LOAD_RUN_SQL),
    (
        "load current run (describe, signal, cancel, query)",
        LOAD_CURRENT_RUN_SQL,
    ),
    ("load run by id (read_history)", LOAD_RUN_BY_ID_SQL),
    ("lease holder (describe)", LEASE_IDENTITY_SQL),
    ("load activity", LOAD_ACTIVITY_SQL),
    ("load timer", LOAD_TIMER_SQL),
    // Persisting a plan: commits, results, heartbeats, leases, deadlines.
    ("insert run", INSERT_RUN_SQL),
    ("close a new run", CLOSE_NEW_RUN_SQL),
    ("update open run", UPDATE_OPEN_RUN_SQL),
    ("update run", UPDATE_RUN_SQL),
    ("insert event", INSERT_EVENT_SQL),
    ("insert activity", INSERT_ACTIVITY_SQL),
    ("update activity", UPDATE_ACTIVITY_SQL),
    ("delete activity", DELETE_ACTIVITY_SQL),
    ("insert timer", INSERT_TIMER_SQL),
    ("delete timer", DELETE_TIMER_SQL),
    ("drop a closed run's activities", DELETE_RUN_ACTIVITIES_SQL),
    ("drop a closed run's timers", DELETE_RUN_TIMERS_SQL),
    // result(): the closing event, and the watcher of closes by other processes.
    ("closing event", CLOSING_EVENT_SQL),
    ("closing events", CLOSING_EVENTS_SQL),
    // Queries.
    ("submit query", INSERT_QUERY_SQL),
    ("take query", TAKE_QUERY_SQL),
    ("answer query", ANSWER_QUERY_SQL),
    ("read answer", READ_ANSWER_SQL),
    ("delete query", DELETE_QUERY_SQL),
    // Not hot, but a page must cost its rows, not the runs before it.
    ("list runs", LIST_RUNS_SQL),
    ("list runs of a status", LIST_RUNS_OF_STATUS_SQL),
    ("list runs of a type", LIST_RUNS_OF_TYPE_SQL),
    (
        "list runs of a status and a type",
        LIST_RUNS_OF_STATUS_AND_TYPE_SQL,
    ),
    // The tick (every poll) and the sleeping worker's next wakeup.
    ("any deadline due", ANY_DUE_SQL),
    ("due timers", DUE_TIMERS_SQL),
    ("due leases", DUE_LEASES_SQL),
    ("due activity deadlines", DUE_ACTIVITIES_SQL),
    ("next wakeup", NEXT_WAKEUP_SQL),
];

/// The partial indexes a statement may scan: they hold queued or leased work only.
const WORK_INDEXES: &[&str] = &[
    "runs_ready",
    "runs_leases",
    "activities_ready",
    "activities_next_deadline",
];

fn plan(connection: &Connection, sql: &str) -> Vec<String> {
    let mut statement = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    // Unbound parameters are NULL: the plan does not depend on the values (no statistics).
    let nulls = std::iter::repeat_n(rusqlite::types::Null, statement.parameter_count());
    statement
        .query_map(rusqlite::params_from_iter(nulls), |row| {
            row.get::<_, String>(3)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Why a line of a plan reads rows it should not, if it does.
fn fault(line: &str) -> Option<&'static str> {
    if line.contains("AUTOMATIC") {
        return Some("builds an automatic index (a scan)");
    }
    if line.starts_with("USE TEMP B-TREE") {
        return Some("sorts in a temporary B-tree");
    }
    // A plan names a table by its alias where it has one, so every SCAN is suspect but the
    // one row of a SELECT without FROM and a scan of a work index.
    let scanned = line.strip_prefix("SCAN ")?;
    if scanned == "CONSTANT ROW" {
        return None;
    }
    let through = scanned
        .split_once(" USING COVERING INDEX ")
        .or_else(|| scanned.split_once(" USING INDEX "))
        .map(|(_, index)| index.split_whitespace().next().unwrap_or_default());
    match through {
        Some(index) if WORK_INDEXES.contains(&index) => None,
        Some(_) => Some("scans an index over every row"),
        None => Some("scans the table"),
    }
}

#[test]
fn the_hot_statements_search_by_index_and_never_scan_a_table() {
    let folder = std::env::temp_dir().join(format!("mainspring-plans-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("plans.db");
    let store = crate::open(
        path.to_str().unwrap(),
        1_000,
        "NORMAL",
        mainspring_core::rules::RulesConfig::default(),
        "test",
    )
    .unwrap();
    let mut faults = Vec::new();
    for (name, sql) in HOT_STATEMENTS {
        let lines = plan(&store.connection, sql);
        for line in &lines {
            if let Some(why) = fault(line) {
                faults.push(format!("{name}: {why}: {line}\n  plan: {lines:?}"));
            }
        }
    }
    assert!(faults.is_empty(), "\n{}", faults.join("\n"));
}

#[test]
fn the_check_tells_a_scan_from_a_search() {
    assert_eq!(fault("SCAN runs"), Some("scans the table"));
    assert_eq!(
        fault("SCAN runs USING COVERING INDEX runs_by_status"),
        Some("scans an index over every row")
    );
    assert_eq!(fault("SCAN runs USING COVERING INDEX runs_ready"), None);
    assert_eq!(
        fault("SEARCH runs USING INTEGER PRIMARY KEY (rowid=?)"),
        None
    );
    assert_eq!(
        fault("SEARCH e USING AUTOMATIC COVERING INDEX (run_key=?)"),
        Some("builds an automatic index (a scan)")
    );
    assert_eq!(
        fault("USE TEMP B-TREE FOR ORDER BY"),
        Some("sorts in a temporary B-tree")
    );
    assert_eq!(fault("SCAN a"), Some("scans the table"));
    assert_eq!(fault("SCAN CONSTANT ROW"), None);
}
