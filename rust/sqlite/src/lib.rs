//! Mainspring's SQLite store.
//!
//! This crate owns the connection, the schema and its migrations, and every storage
//! operation. Each loads the records it needs, has the rules of `mainspring-core` decide
//! (`mainspring_core::rules::operations`), and persists the plan fenced by the versions it was
//! decided on (`records`): no rule is written here. A group of operations (one event-loop pass
//! of them) runs in one transaction on a thread of its own ([`Executor`]), without the Python
//! interpreter, so the SQL of one group overlaps the Python work of the next.

mod activity_tasks;
mod deadlines;
mod error;
mod executor;
mod group;
mod open;
mod operation;
mod polls;
#[cfg(test)]
mod query_plans;
mod records;
mod runs;
mod schema;
mod slots;
mod workflow_tasks;

pub use error::{StoreError, StoreResult};
pub use executor::{Executor, Finished};
pub use group::run_group;
pub use open::{open, Store};
pub use operation::{
    execute, Answer, Committed, Eager, HeldAttempt, NewRun, Operation, Output, QueryRow, Request,
    RunSummary, WorkflowLease,
};
pub use rusqlite;
pub use schema::{Migration, MIGRATIONS, SCHEMA_VERSION};
pub use slots::SlotPool;
