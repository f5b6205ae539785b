//! The task dispatcher and in-memory store behind `MemoryStorage`.
//!
//! It owns every run's history and the task queues: workflow tasks (at most one outstanding per
//! run; events that arrive while one is leased are picked up by the next), activity tasks per
//! task queue ordered by ready time (retry backoff), timers, and leases with deadlines. Time is
//! always an argument; [`MemoryStore::tick`] applies whatever came due.

mod activity_tasks;
mod deadlines;
mod effects;
mod outcome;
mod retry;
mod store;

pub use activity_tasks::ActivityTaskLease;
pub use effects::{effect_of, Effect};
pub use outcome::number_outcome;
pub use retry::{backoff_ms, decide, RetryDecision};
pub use store::{DispatcherConfig, MemoryStore, RunStatus, RunSummary, WorkflowTaskLease};
