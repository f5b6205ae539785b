//! A run's record and the rules of its one workflow task.
//!
//! The workflow task's states (at most one task per run; events that arrive while it is
//! leased are picked up by the next):
//!
//! ```text
//!            wake (inbound event)          lease (poll)
//!   Idle ──────────────────────▶ Queued ───────────────▶ Leased
//!    ▲  ◀─── commit (nothing new) ─────────────────────────┘ │
//!    │       commit (events arrived mid-task) ──▶ Queued      │
//!    │       fail (backoff) ──▶ Queued(later)                 │
//!    │       lease expired ──▶ Queued                         │
//!    └──── close (any state) ◀────────────────────────────────┘
//! ```
//!
//! An eager caller (a worker in the store's process) may take a lease straight from Idle or
//! a ready Queued task in the same commit that woke it.

use std::sync::Arc;

use super::tokens::TokenSource;
use super::RulesConfig;
use crate::error::{CoreError, CoreResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Canceled,
    Terminated,
}

impl RunStatus {
    /// Every status, in the order they are listed to users.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Canceled,
        RunStatus::Terminated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Failed => "FAILED",
            RunStatus::Canceled => "CANCELED",
            RunStatus::Terminated => "TERMINATED",
        }
    }

    pub fn from_name(name: &str) -> CoreResult<Self> {
        Ok(match name {
            "RUNNING" => RunStatus::Running,
            "COMPLETED" => RunStatus::Completed,
            "FAILED" => RunStatus::Failed,
            "CANCELED" => RunStatus::Canceled,
            "TERMINATED" => RunStatus::Terminated,
            other => {
                return Err(CoreError::InvalidCommand(format!(
                    "{other:?} is not a run status"
                )))
            }
        })
    }
}

/// The run's workflow task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowTaskState {
    /// No task: the run waits for an event.
    Idle,
    /// Waiting for a worker from `ready_at_ms` (later than now while a retry backs off).
    Queued { ready_at_ms: i64 },
    /// Held by the worker holding `token` until `deadline_ms`, when it lapses (a deadline is
    /// due at its time, as every deadline is).
    Leased { token: i64, deadline_ms: i64 },
}

/// What never changes about a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunIdentity {
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
}

/// One run as a store keeps it (one row).
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// The store's key for the run; 0 until the store has inserted it.
    pub key: i64,
    /// Moves with every change to the record: the compare-and-set of the next write.
    pub version: i64,
    /// Shared: every load of a record would otherwise copy four strings that never change.
    pub identity: Arc<RunIdentity>,
    pub status: RunStatus,
    /// Events recorded so far; the next one is `history_length + 1`.
    pub history_length: u64,
    pub workflow_task: WorkflowTaskState,
    /// Consecutive failed workflow tasks (the backoff's exponent), and the last one's reason.
    pub task_failures: u32,
    pub last_task_failure: Option<String>,
    /// A cancellation was requested (recorded once).
    pub cancel_requested: bool,
    /// Signals its tasks dropped because their payload did not decode (what `describe` shows).
    pub dropped_signals: u32,
    /// The first event the cached instance of the worker that last completed a task lacks
    /// (one past what that task saw): what a poll hands out with the lease.
    pub tail_start: u64,
    pub started_ms: i64,
    pub closed_ms: Option<i64>,
}

/// A worker of the store's process that can take a workflow task at once (eager dispatch):
/// it polls `task_queue` and holds what it takes for `lease_ms`.
#[derive(Clone, Copy, Debug)]
pub struct EagerWorkflowTask<'a> {
    pub task_queue: &'a str,
    pub lease_ms: u64,
}

impl RunRecord {
    /// A run about to record its first event (WorkflowStarted), with no task yet.
    pub fn new(identity: RunIdentity, now_ms: i64, version: i64) -> Self {
        RunRecord {
            key: 0,
            version,
            identity: Arc::new(identity),
            status: RunStatus::Running,
            history_length: 0,
            workflow_task: WorkflowTaskState::Idle,
            task_failures: 0,
            last_task_failure: None,
            cancel_requested: false,
            dropped_signals: 0,
            tail_start: 1,
            started_ms: now_ms,
            closed_ms: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.status == RunStatus::Running
    }

    /// Signals, cancellation and termination need a running run.
    pub fn require_running(&self) -> CoreResult<()> {
        if self.is_running() {
            Ok(())
        } else {
            Err(CoreError::WorkflowNotRunning(
                self.identity.workflow_id.clone(),
            ))
        }
    }

    /// Counts `count` new events; returns the id of the first.
    pub fn append(&mut self, count: u64) -> u64 {
        let first = self.history_length + 1;
        self.history_length += count;
        first
    }

    /// An inbound event was appended: make sure a workflow task will look at it. A queued or
    /// leased task is left alone (a leased task's commit sees what it did not see and queues
    /// the next). With `eager`, a caller polling the run's task queue takes the task at once
    /// if it is idle or queued and ready; returns whether it did.
    pub fn wake(
        &mut self,
        now_ms: i64,
        eager: Option<EagerWorkflowTask<'_>>,
        tokens: &mut dyn TokenSource,
    ) -> bool {
        if !self.is_running() {
            return false;
        }
        let ready = match self.workflow_task {
            WorkflowTaskState::Idle => true,
            WorkflowTaskState::Queued { ready_at_ms } => ready_at_ms <= now_ms,
            WorkflowTaskState::Leased { .. } => false,
        };
        if let Some(eager) = eager {
            if ready && eager.task_queue == self.identity.task_queue {
                self.workflow_task = WorkflowTaskState::Leased {
                    token: tokens.next_token(),
                    deadline_ms: now_ms.saturating_add(eager.lease_ms as i64),
                };
                return true;
            }
        }
        if self.workflow_task == WorkflowTaskState::Idle {
            self.workflow_task = WorkflowTaskState::Queued {
                ready_at_ms: now_ms,
            };
        }
        false
    }

    /// Hands the task to a worker. Refused (StaleTask) unless it is queued and ready: a poll
    /// candidate another worker took first, or one whose run closed, is skipped.
    pub fn lease_workflow_task(
        &mut self,
        now_ms: i64,
        lease_ms: u64,
        token: i64,
    ) -> CoreResult<()> {
        match self.workflow_task {
            WorkflowTaskState::Queued { ready_at_ms }
                if ready_at_ms <= now_ms && self.is_running() =>
            {
                self.workflow_task = WorkflowTaskState::Leased {
                    token,
                    deadline_ms: now_ms.saturating_add(lease_ms as i64),
                };
                Ok(())
            }
            _ => Err(CoreError::StaleTask(format!(
                "workflow task of {} is not ready to lease",
                self.identity.workflow_id
            ))),
        }
    }

    /// Whether a worker holds the task (its lease may have lapsed unnoticed yet).
    pub fn workflow_task_is_leased(&self) -> bool {
        matches!(self.workflow_task, WorkflowTaskState::Leased { .. })
    }

    /// Whether `token` still holds the task at `now_ms` (fencing).
    pub fn check_workflow_task_lease(&self, token: i64, now_ms: i64) -> CoreResult<()> {
        match self.workflow_task {
            WorkflowTaskState::Leased {
                token: held,
                deadline_ms,
            } if held == token && now_ms < deadline_ms && self.is_running() => Ok(()),
            _ => Err(CoreError::StaleTask(format!(
                "workflow task {token} of {} is no longer held by this worker",
                self.identity.workflow_id
            ))),
        }
    }

    /// A workflow task that saw events up to `seen_event_id` recorded `added` events (its
    /// boundary and commands), closing the run with `closes` if it ended it. The caller has
    /// checked the lease. Events after `seen_event_id` that were there before these arrived
    /// while the task ran: the run then needs another task at once.
    pub fn commit_workflow_task(
        &mut self,
        now_ms: i64,
        seen_event_id: u64,
        added: u64,
        closes: Option<RunStatus>,
    ) {
        let unseen = self.history_length > seen_event_id;
        self.history_length += added;
        self.task_failures = 0;
        self.last_task_failure = None;
        self.tail_start = seen_event_id + 1;
        match closes {
            Some(status) => self.close(status, now_ms),
            None if unseen => {
                self.workflow_task = WorkflowTaskState::Queued {
                    ready_at_ms: now_ms,
                };
            }
            None => self.workflow_task = WorkflowTaskState::Idle,
        }
    }

    /// A fused commit (an activity result and the task it woke, run by a worker on its cached
    /// instance before anything was recorded) holds only while no task holds the run and its
    /// history is exactly as long as that instance saw.
    pub fn accepts_fused_commit(&self, expected_length: u64) -> bool {
        self.is_running()
            && self.workflow_task == WorkflowTaskState::Idle
            && self.history_length == expected_length
    }

    /// The worker could not run the task (a bug in workflow code, non-determinism, an
    /// unknown type): nothing is recorded and the task is retried after a delay that doubles
    /// with each consecutive failure, so a fixed deployment picks it up.
    pub fn fail_workflow_task(
        &mut self,
        token: i64,
        message: &str,
        now_ms: i64,
        config: &RulesConfig,
    ) -> CoreResult<()> {
        self.check_workflow_task_lease(token, now_ms)?;
        self.task_failures = self.task_failures.saturating_add(1);
        self.last_task_failure = Some(message.to_string());
        let delay = workflow_task_backoff_ms(self.task_failures, config);
        self.workflow_task = WorkflowTaskState::Queued {
            ready_at_ms: now_ms.saturating_add(delay as i64),
        };
        Ok(())
    }

    /// A lease whose deadline passed: the worker died or stalled, so the task goes back to
    /// the queue for another. Returns whether it applied.
    pub fn expire_workflow_task_lease(&mut self, now_ms: i64) -> bool {
        match self.workflow_task {
            WorkflowTaskState::Leased { deadline_ms, .. } if deadline_ms <= now_ms => {
                self.workflow_task = WorkflowTaskState::Queued {
                    ready_at_ms: now_ms,
                };
                true
            }
            _ => false,
        }
    }

    /// Ends the run: no task of a closed run is ever handed out (its store drops the run's
    /// pending activities and timers with it).
    pub fn close(&mut self, status: RunStatus, now_ms: i64) {
        self.status = status;
        self.closed_ms = Some(now_ms);
        self.workflow_task = WorkflowTaskState::Idle;
    }

    /// When the task's lease ends, if it is leased.
    pub fn lease_deadline_ms(&self) -> Option<i64> {
        match self.workflow_task {
            WorkflowTaskState::Leased { deadline_ms, .. } => Some(deadline_ms),
            _ => None,
        }
    }

    /// When the task may be handed out, if it is queued.
    pub fn ready_at_ms(&self) -> Option<i64> {
        match self.workflow_task {
            WorkflowTaskState::Queued { ready_at_ms } => Some(ready_at_ms),
            _ => None,
        }
    }

    /// The token holding the task, if it is leased.
    pub fn lease_token(&self) -> Option<i64> {
        match self.workflow_task {
            WorkflowTaskState::Leased { token, .. } => Some(token),
            _ => None,
        }
    }
}

/// Delay before retrying a workflow task after its `failures`-th consecutive failure:
/// `initial × 2^(failures − 1)`, capped at the maximum.
pub fn workflow_task_backoff_ms(failures: u32, config: &RulesConfig) -> u64 {
    let exponent = failures.saturating_sub(1).min(32);
    config
        .workflow_task_retry_initial_ms
        .saturating_mul(1u64 << exponent)
        .min(config.workflow_task_retry_maximum_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::CountingTokens;

    /// A run that recorded its WorkflowStarted event at 0 and queued its first task.
    fn run() -> RunRecord {
        let mut run = RunRecord::new(
            RunIdentity {
                workflow_id: "w".into(),
                run_id: "r".into(),
                workflow_type: "wf".into(),
                task_queue: "q".into(),
            },
            0,
            1,
        );
        run.append(1);
        run.wake(0, None, &mut CountingTokens::default());
        run
    }

    #[test]
    fn a_started_run_has_its_first_task_queued() {
        let run = run();
        assert_eq!(run.history_length, 1);
        assert_eq!(run.ready_at_ms(), Some(0));
    }

    #[test]
    fn lease_commit_and_wake() {
        let mut tokens = CountingTokens::default();
        let mut run = run();
        run.lease_workflow_task(5, 100, 7).unwrap();
        assert_eq!(run.lease_deadline_ms(), Some(105));
        // A second lease of the same task is refused.
        assert!(run.lease_workflow_task(5, 100, 8).is_err());
        // A signal mid-task leaves the lease alone ...
        run.append(1);
        assert!(!run.wake(6, None, &mut tokens));
        assert_eq!(run.lease_token(), Some(7));
        // ... and the commit, which saw only event 1, queues the next task.
        run.check_workflow_task_lease(7, 104).unwrap();
        run.commit_workflow_task(10, 1, 2, None);
        assert_eq!(run.history_length, 4);
        assert_eq!(run.ready_at_ms(), Some(10));
        assert_eq!(run.tail_start, 2);
    }

    #[test]
    fn a_commit_that_saw_everything_leaves_the_run_idle_and_a_terminal_one_closes_it() {
        let mut run = run();
        run.lease_workflow_task(0, 100, 1).unwrap();
        run.commit_workflow_task(1, 1, 2, None);
        assert_eq!(run.workflow_task, WorkflowTaskState::Idle);
        run.append(1);
        let mut tokens = CountingTokens::default();
        run.wake(2, None, &mut tokens);
        run.lease_workflow_task(2, 100, 2).unwrap();
        run.commit_workflow_task(3, 4, 2, Some(RunStatus::Completed));
        assert_eq!(
            (run.status, run.closed_ms, run.workflow_task),
            (RunStatus::Completed, Some(3), WorkflowTaskState::Idle)
        );
        assert!(run.require_running().is_err());
    }

    #[test]
    fn the_lease_lapses_at_its_deadline() {
        let mut run = run();
        run.lease_workflow_task(0, 100, 9).unwrap();
        assert!(run.check_workflow_task_lease(9, 99).is_ok());
        assert!(run.check_workflow_task_lease(9, 100).is_err());
        assert!(run.check_workflow_task_lease(8, 50).is_err());
        assert!(!run.expire_workflow_task_lease(99));
        assert!(run.expire_workflow_task_lease(100));
        assert_eq!(run.ready_at_ms(), Some(100));
    }

    #[test]
    fn failed_tasks_back_off_exponentially_up_to_the_cap() {
        let config = RulesConfig {
            workflow_task_retry_initial_ms: 1_000,
            workflow_task_retry_maximum_ms: 5_000,
            ..RulesConfig::default()
        };
        let mut run = run();
        let mut readies = Vec::new();
        for (token, now) in (1..=4).zip([0i64, 10_000, 20_000, 30_000]) {
            run.workflow_task = WorkflowTaskState::Queued { ready_at_ms: now };
            run.lease_workflow_task(now, 100, token).unwrap();
            run.fail_workflow_task(token, "boom", now, &config).unwrap();
            readies.push(run.ready_at_ms().unwrap() - now);
        }
        assert_eq!(readies, vec![1_000, 2_000, 4_000, 5_000]);
        assert_eq!(run.task_failures, 4);
        assert_eq!(run.last_task_failure.as_deref(), Some("boom"));
        // A successful task resets the count.
        run.workflow_task = WorkflowTaskState::Queued { ready_at_ms: 0 };
        run.lease_workflow_task(40_000, 100, 5).unwrap();
        run.commit_workflow_task(40_000, 1, 1, None);
        assert_eq!(
            (run.task_failures, run.last_task_failure.clone()),
            (0, None)
        );
    }

    #[test]
    fn an_eager_caller_takes_an_idle_task_of_its_own_queue_only() {
        let mut tokens = CountingTokens::default();
        let mut run = run();
        run.workflow_task = WorkflowTaskState::Idle;
        let other = EagerWorkflowTask {
            task_queue: "elsewhere",
            lease_ms: 50,
        };
        assert!(!run.wake(1, Some(other), &mut tokens));
        assert_eq!(run.ready_at_ms(), Some(1));
        let mine = EagerWorkflowTask {
            task_queue: "q",
            lease_ms: 50,
        };
        assert!(run.wake(2, Some(mine), &mut tokens));
        assert_eq!(run.lease_deadline_ms(), Some(52));
        // A task backing off is not taken early.
        run.workflow_task = WorkflowTaskState::Queued { ready_at_ms: 100 };
        assert!(!run.wake(3, Some(mine), &mut tokens));
    }

    #[test]
    fn a_closed_run_is_never_woken_nor_leased() {
        let mut tokens = CountingTokens::default();
        let mut run = run();
        run.close(RunStatus::Terminated, 1);
        assert!(!run.wake(2, None, &mut tokens));
        assert_eq!(run.workflow_task, WorkflowTaskState::Idle);
        run.workflow_task = WorkflowTaskState::Queued { ready_at_ms: 0 };
        assert!(run.lease_workflow_task(3, 10, 1).is_err());
    }
}
