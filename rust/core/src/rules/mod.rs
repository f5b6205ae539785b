//! Every transition rule of the engine, once, as pure functions over the records a store keeps.
//!
//! A store (memory, SQLite, PostgreSQL, ...) keeps three kinds of record: a [`RunRecord`] per
//! run (its status and its one workflow task), an [`ActivityRecord`] per open activity (its
//! current attempt) and a [`TimerRecord`] per pending timer, next to each run's events. A store
//! operation goes: the store **loads** the records the operation names, an [`operations`]
//! function **decides** (applies the rules below) and returns a [`Plan`], and the store
//! **persists** the plan, fenced: every write of a record that existed is a compare-and-set on
//! the version it was loaded at, and the row count is checked ([`Plan`] says which version
//! each write expects). Invariants across records ("one open run per workflow id") are the
//! store's unique index. This is how Temporal's history service works: rules applied to a
//! run's mutable state, written with a conditional update.
//!
//! The rules, by record (each a method of the record, or a function of [`operations`]):
//!
//! | rule | where | transition |
//! |---|---|---|
//! | start | [`operations::start_workflow`] | new run: Running, task Queued(now) (or Leased to an eager caller) |
//! | wake | [`RunRecord::wake`] | inbound event on a Running run: task Idle → Queued(now), or Leased to an eager caller |
//! | lease | [`RunRecord::lease_workflow_task`] | task Queued(ready ≤ now) → Leased(token, now + lease) |
//! | commit | [`RunRecord::commit_workflow_task`] | Leased(token, not past deadline) → Idle, or Queued(now) when events arrived mid-task; closes the run on a terminal event |
//! | fused commit | [`RunRecord::accepts_fused_commit`] | Running, Idle, history exactly as the caller's instance saw it |
//! | task backoff | [`RunRecord::fail_workflow_task`] | Leased(token) → Queued(now + initial × 2^(failures−1), capped) |
//! | lease expiry | [`RunRecord::expire_workflow_task_lease`] | Leased(deadline ≤ now) → Queued(now) |
//! | close | [`RunRecord::close`] | any → closed status; no task; pending work dropped |
//! | attempt lease | [`ActivityRecord::lease`] | Queued(ready ≤ now) → Running(token, now) |
//! | retry | [`ActivityRecord::attempt_failed`] | Running → Queued(now + backoff), or resolved (ActivityFailed / ActivityTimedOut) |
//! | the four timeouts | [`ActivityRecord::due_timeout`] | schedule-to-close, schedule-to-start, start-to-close, heartbeat |
//! | heartbeat | [`ActivityRecord::heartbeat`] | Running(token): details and heartbeat deadline move |
//! | cancel | [`operations::cancel_activity`] | open activity → resolved ActivityCanceled (try-cancel) |
//! | deadlines (tick) | [`operations::fire_timer`], [`operations::expire_workflow_task_lease`], [`operations::apply_activity_deadline`] | what a due deadline does |
//! | tick batch | [`tick_batch`] | a tick applies the earliest `RulesConfig::tick_batch` due deadlines; the rest wait for the next |
//!
//! Nothing here reads a clock or does I/O: time is an argument, tokens come from the store's
//! [`TokenSource`].

mod activity;
mod effects;
mod leases;
pub mod operations;
mod outcome;
mod plan;
mod retry;
mod row_codec;
pub mod rows;
mod run;
mod tick;
mod tokens;

pub use activity::{ActivityRecord, AttemptEnd, AttemptState, ScheduledActivity, TimerRecord};
pub use effects::{effect_of, Effect};
pub use leases::{ActivityTaskLease, WorkflowTaskLease};
pub use outcome::DecodedOutcome;
pub use plan::{ActivityWrite, Plan, RunChange, TimerWrite};
pub use retry::{backoff_ms, decide, RetryDecision};
pub use rows::{ActivityRow, RunRow};
pub use run::{RunIdentity, RunRecord, RunStatus, WorkflowTaskState};
pub use tick::tick_batch;
pub use tokens::{CountingTokens, SplitMixTokens, TokenSource};

/// Operational settings of the rules (no hard-coded constants in the logic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// Delay before a failed workflow task is retried; doubles per consecutive failure.
    pub workflow_task_retry_initial_ms: u64,
    pub workflow_task_retry_maximum_ms: u64,
    /// Most due deadlines (timers, lapsed leases, activity timeouts) one tick applies: a
    /// tick runs in one store transaction, which this keeps short.
    pub tick_batch: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            workflow_task_retry_initial_ms: 1_000,
            workflow_task_retry_maximum_ms: 60_000,
            tick_batch: 1_000,
        }
    }
}
