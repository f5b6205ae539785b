//! The schema and its migrations, applied on open.
//!
//! Each migration moves the file from version N-1 to N inside one transaction. A file written
//! by a newer Mainspring (a version above the last one here) is refused with a clear error
//! rather than read with the wrong rules.

use rusqlite::{Connection, OptionalExtension};

use mainspring_core::history::upgrade_event_row;

use crate::error::{StoreError, StoreResult};

/// One step of the schema: SQL, or code where rows must be rewritten by the core's codecs.
pub enum Migration {
    Sql(&'static str),
    Code(fn(&Connection) -> StoreResult<()>),
}

/// The migrations, in order: `MIGRATIONS[n]` moves a file from version n to n + 1.
pub const MIGRATIONS: &[Migration] = &[
    // Version 1.
    Migration::Sql(
        r#"
CREATE TABLE runs (
    run_key INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL UNIQUE,
    workflow_type TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    status TEXT NOT NULL,
    history_length INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    last_task_failure TEXT,
    task_failures INTEGER NOT NULL DEFAULT 0,
    -- The run's one workflow task: 0 idle, 1 queued (ready at task_ready_ms),
    -- 2 leased (to task_token until task_deadline_ms).
    task_state INTEGER NOT NULL DEFAULT 0,
    task_ready_ms INTEGER,
    task_token INTEGER,
    task_deadline_ms INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_workflow ON runs (workflow_id, run_key);
CREATE INDEX runs_ready ON runs (task_queue, task_state, task_ready_ms);
CREATE INDEX runs_leases ON runs (task_state, task_deadline_ms);

CREATE TABLE events (
    run_key INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    row BLOB NOT NULL,
    PRIMARY KEY (run_key, event_id)
) WITHOUT ROWID;

CREATE TABLE activities (
    activity_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_key INTEGER NOT NULL,
    scheduled_event_id INTEGER NOT NULL,
    task_queue TEXT NOT NULL,
    activity_type TEXT NOT NULL,
    input BLOB NOT NULL,
    policy BLOB NOT NULL,
    schedule_to_close_ms INTEGER,
    schedule_to_start_ms INTEGER,
    start_to_close_ms INTEGER,
    heartbeat_ms INTEGER,
    attempt INTEGER NOT NULL,
    scheduled_ms INTEGER NOT NULL,
    -- 0 queued (may start at ready_ms), 1 running (attempt token).
    state INTEGER NOT NULL,
    ready_ms INTEGER,
    token INTEGER,
    started_ms INTEGER,
    heartbeat_details BLOB NOT NULL DEFAULT x'',
    last_failure BLOB,
    -- Absolute deadlines, NULL when there is none: the tick scans them by index.
    attempt_deadline_ms INTEGER,
    heartbeat_deadline_ms INTEGER,
    start_deadline_ms INTEGER,
    close_deadline_ms INTEGER
);
CREATE INDEX activities_ready ON activities (task_queue, state, ready_ms);
CREATE INDEX activities_of_run ON activities (run_key, scheduled_event_id);
CREATE INDEX activities_attempt_deadline ON activities (attempt_deadline_ms);
CREATE INDEX activities_heartbeat_deadline ON activities (heartbeat_deadline_ms);
CREATE INDEX activities_start_deadline ON activities (start_deadline_ms);
CREATE INDEX activities_close_deadline ON activities (close_deadline_ms);

CREATE TABLE timers (
    run_key INTEGER NOT NULL,
    started_event_id INTEGER NOT NULL,
    fire_ms INTEGER NOT NULL,
    PRIMARY KEY (run_key, started_event_id)
) WITHOUT ROWID;
CREATE INDEX timers_due ON timers (fire_ms);

CREATE TABLE queries (
    query_id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_queue TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    input BLOB NOT NULL,
    -- 0 waiting for a worker, 1 taken, 2 answered.
    state INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    error TEXT,
    created_ms INTEGER NOT NULL
);
CREATE INDEX queries_waiting ON queries (task_queue, state, query_id);

"#,
    ),
    // Version 2: the first event a run's cached instance has not seen (one past what its last
    // workflow task saw). A poll hands out the history from there, saving a read per task.
    Migration::Sql(
        r#"
ALTER TABLE runs ADD COLUMN tail_start INTEGER NOT NULL DEFAULT 1

"#,
    ),
    // Version 3: one index over an activity's earliest deadline instead of one per deadline
    // kind, so changing an activity maintains one deadline index, not four.
    Migration::Sql(
        r#"
DROP INDEX activities_attempt_deadline;
DROP INDEX activities_heartbeat_deadline;
DROP INDEX activities_start_deadline;
DROP INDEX activities_close_deadline;
ALTER TABLE activities ADD COLUMN next_deadline_ms INTEGER GENERATED ALWAYS AS (
    min(
        coalesce(attempt_deadline_ms, 9223372036854775807),
        coalesce(heartbeat_deadline_ms, 9223372036854775807),
        coalesce(start_deadline_ms, 9223372036854775807),
        coalesce(close_deadline_ms, 9223372036854775807)
    )
) VIRTUAL;
CREATE INDEX activities_next_deadline ON activities (next_deadline_ms)

"#,
    ),
    // Version 4: the task indexes hold only the rows they find (queued or leased tasks, queued
    // attempts). Most runs are idle or closed, so the indexes stay small, and a task commit
    // (leased -> idle) touches one index entry instead of rewriting two. Queries spell these
    // states out as literals: SQLite uses a partial index only when it can see the WHERE.
    Migration::Sql(
        r#"
DROP INDEX runs_ready;
DROP INDEX runs_leases;
DROP INDEX activities_ready;
CREATE INDEX runs_ready ON runs (task_queue, task_ready_ms) WHERE task_state = 1;
CREATE INDEX runs_leases ON runs (task_deadline_ms) WHERE task_state = 2;
CREATE INDEX activities_ready ON activities (task_queue, ready_ms) WHERE state = 0

"#,
    ),
    // Version 5: the store persists what the rules of `mainspring-core` decide, fenced.
    // Every change to a run or an activity is a compare-and-set on its `version`; "one open
    // run per workflow id" is a unique index. Activities are keyed as the rules name them (their
    // run and their ActivityScheduled event), carry the id users see, and keep only the state
    // their deadlines derive from (the last heartbeat) plus the earliest deadline, as the rules
    // compute it, for the tick's index.
    Migration::Sql(
        r#"
ALTER TABLE runs ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX runs_open_workflow ON runs (workflow_id) WHERE status = 'RUNNING';

CREATE TABLE activities_v5 (
    run_key INTEGER NOT NULL,
    scheduled_event_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    activity_id TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    activity_type TEXT NOT NULL,
    input BLOB NOT NULL,
    policy BLOB NOT NULL,
    schedule_to_close_ms INTEGER,
    schedule_to_start_ms INTEGER,
    start_to_close_ms INTEGER,
    heartbeat_ms INTEGER,
    attempt INTEGER NOT NULL,
    scheduled_ms INTEGER NOT NULL,
    -- 0 queued (may start at ready_ms), 1 running (under token, since started_ms).
    state INTEGER NOT NULL,
    ready_ms INTEGER,
    token INTEGER,
    started_ms INTEGER,
    last_heartbeat_ms INTEGER,
    heartbeat_details BLOB NOT NULL DEFAULT x'',
    last_failure BLOB,
    next_deadline_ms INTEGER,
    PRIMARY KEY (run_key, scheduled_event_id)
);
INSERT INTO activities_v5 SELECT run_key, scheduled_event_id, 0, CAST(activity_id AS TEXT),
    task_queue, activity_type, input, policy, schedule_to_close_ms, schedule_to_start_ms,
    start_to_close_ms, heartbeat_ms, attempt, scheduled_ms, state, ready_ms, token, started_ms,
    CASE WHEN state = 1 THEN coalesce(heartbeat_deadline_ms - heartbeat_ms, started_ms) END,
    heartbeat_details, last_failure,
    CASE WHEN next_deadline_ms = 9223372036854775807 THEN NULL ELSE next_deadline_ms END
    FROM activities;
DROP TABLE activities;
ALTER TABLE activities_v5 RENAME TO activities;
CREATE INDEX activities_ready ON activities (task_queue, ready_ms) WHERE state = 0;
CREATE INDEX activities_next_deadline ON activities (next_deadline_ms)
    WHERE next_deadline_ms IS NOT NULL

"#,
    ),
    // Version 6: history rows in format 2 (Protocol Buffers). Every stored event row is
    // rewritten from format 1 (postcard) in this one transaction; none is left behind, so a
    // row's format is the file's schema version and needs no tag of its own. Runs count the
    // signals their tasks dropped (undecodable payloads).
    Migration::Code(rewrite_event_rows_in_format_2),
    // Version 7: `list_workflows` by status or by type, a page at a time in key order. Every
    // index of a rowid table ends with the key, so each filter's page is one range of its
    // index (`status = ? AND run_key > ?`), not a scan of the runs before it. A run's type
    // never changes, and its status only when it closes (`UPDATE_OPEN_RUN_SQL` leaves status
    // out of an open run's update), so the indexes cost a write at start and one at close.
    Migration::Sql(
        r#"
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX runs_by_type ON runs (workflow_type)

"#,
    ),
    // Version 8: which worker (its identity) holds a run's workflow task, for `describe`;
    // written by the process that takes the lease (see `records.rs`).
    Migration::Sql(
        r#"
ALTER TABLE runs ADD COLUMN lease_identity TEXT

"#,
    ),
];

fn rewrite_event_rows_in_format_2(connection: &Connection) -> StoreResult<()> {
    connection
        .execute_batch("ALTER TABLE runs ADD COLUMN dropped_signals INTEGER NOT NULL DEFAULT 0")?;
    // In pages, in key order: a page is read whole before any of it is written, so no
    // statement reads the table while another changes it.
    const PAGE: i64 = 10_000;
    let mut read = connection.prepare(
        "SELECT run_key, event_id, row FROM events WHERE (run_key, event_id) > (?1, ?2) \
         ORDER BY run_key, event_id LIMIT ?3",
    )?;
    let mut write =
        connection.prepare("UPDATE events SET row = ?3 WHERE run_key = ?1 AND event_id = ?2")?;
    let mut after = (i64::MIN, i64::MIN);
    loop {
        let page = read
            .query_map(rusqlite::params![after.0, after.1, PAGE], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let Some(&(last_run, last_event, _)) = page.last() else {
            return Ok(());
        };
        for (run_key, event_id, old) in &page {
            let new = upgrade_event_row(old).map_err(|error| {
                StoreError::Sqlite(format!(
                    "event {event_id} of run {run_key} does not decode as format 1: {error}"
                ))
            })?;
            write.execute(rusqlite::params![run_key, event_id, new])?;
        }
        after = (last_run, last_event);
    }
}

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Brings the file up to [`SCHEMA_VERSION`]; refuses a newer one. One transaction.
pub fn migrate(connection: &Connection) -> StoreResult<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let migrated = apply_migrations(connection);
    let finish = if migrated.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    connection.execute_batch(finish)?;
    migrated
}

fn apply_migrations(connection: &Connection) -> StoreResult<()> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS mainspring_meta (key TEXT PRIMARY KEY, value TEXT)",
    )?;
    let stored: Option<String> = connection
        .query_row(
            "SELECT value FROM mainspring_meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    let version = match stored {
        None => 0,
        Some(text) => text.parse::<usize>().map_err(|_| {
            StoreError::Sqlite(format!(
                "the file's schema version {text:?} is not a number"
            ))
        })?,
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::Sqlite(format!(
            "this database was written by a newer Mainspring (schema version {version}; this \
             one reads up to {SCHEMA_VERSION}): upgrade Mainspring to open it"
        )));
    }
    for migration in &MIGRATIONS[version..] {
        match migration {
            Migration::Sql(sql) => connection.execute_batch(sql)?,
            Migration::Code(step) => step(connection)?,
        }
    }
    connection.execute(
        "INSERT OR REPLACE INTO mainspring_meta (key, value) VALUES ('schema_version', ?)",
        [SCHEMA_VERSION.to_string()],
    )?;
    Ok(())
}
