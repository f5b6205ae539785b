//! Mainspring's SQLite store, native half.
//!
//! This crate owns the connection, the schema and its migrations, and the operations every
//! workflow goes through (starting a run, committing a workflow task, recording an activity's
//! result, polls, reading a closing event); `SqliteStorage` (Python) runs the rarely used
//! operations (signals, cancellation, queries, the tick that applies due deadlines) through
//! the same connection.
//! A group of those (one event-loop pass of them) runs here in one transaction on a thread of
//! its own ([`Executor`]), without the Python interpreter, so the SQL of one group overlaps
//! the Python work of the next. The rules — what an outcome event sets in motion — come from
//! `mainspring-core`; this crate only stores what they decide, in the same rows and with the
//! same statements as the Python operations that share the file.

mod activity_tasks;
mod error;
mod executor;
mod group;
mod open;
mod operation;
mod policy;
mod polls;
mod runs;
mod schema;
mod tokens;
mod workflow_tasks;

pub use error::{StoreError, StoreResult};
pub use executor::{Executor, Finished};
pub use group::run_group;
pub use open::{open, Store};
pub use operation::{
    execute, ActivityLease, Committed, Eager, NewRun, Operation, Output, Request, WorkflowLease,
};
pub use polls::QueryRow;
pub use rusqlite;
pub use schema::{MIGRATIONS, SCHEMA_VERSION};

/// Task states of a run's workflow task (`runs.task_state`), as the schema documents them.
pub(crate) const IDLE: i64 = 0;
pub(crate) const QUEUED: i64 = 1;
pub(crate) const LEASED: i64 = 2;
/// States of an activity attempt (`activities.state`).
pub(crate) const ACTIVITY_QUEUED: i64 = 0;
pub(crate) const ACTIVITY_RUNNING: i64 = 1;
