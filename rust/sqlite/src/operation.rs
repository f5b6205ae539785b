//! The native operations: what a caller asks for, what it gets back, and the dispatch between
//! them. Each runs inside a transaction its group opened and either does all of its work or
//! fails (and its group rolls it back). Each loads the records it needs, has the rules of
//! `mainspring-core` decide, and persists the plan, fenced (`records`).

use std::sync::Arc;

use mainspring_core::history::Failure;
use mainspring_core::rules::{ActivityTaskLease, WorkflowTaskLease};

use crate::activity_tasks;
use crate::deadlines;
use crate::error::StoreResult;
use crate::open::Store;
use crate::polls;
use crate::runs;
use crate::slots::SlotPool;
use crate::workflow_tasks;

/// Where a commit may hand activity attempts straight to its caller: the caller's task queue
/// and how many attempts it can start now (eager execution); with `pool`, `slots` is how
/// many it would take, and it takes them from the pool as it runs (see [`SlotPool`]).
#[derive(Clone, Debug, Default)]
pub struct Eager {
    pub queue: Option<String>,
    pub slots: usize,
    pub pool: Option<Arc<SlotPool>>,
}

/// The identity of a run being started.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
}

/// An activity attempt the caller holds: its run, its ActivityScheduled event, its token.
#[derive(Clone, Copy, Debug)]
pub struct HeldAttempt {
    pub run_key: i64,
    pub scheduled_event_id: u64,
    pub token: i64,
}

#[derive(Clone, Debug)]
pub enum Operation {
    /// Record a run with its first event; queue its first workflow task, or lease it to the
    /// caller for `eager_lease_ms`.
    StartWorkflow {
        run: NewRun,
        input: Vec<u8>,
        eager_lease_ms: Option<i64>,
    },
    /// Record a run (`started_row`: its first event as the caller encoded it) together with
    /// the outcome of its first workflow task, which the caller already ran.
    StartWorkflowWithFirstTask {
        run: NewRun,
        started_row: Vec<u8>,
        outcome: Vec<u8>,
        eager: Eager,
    },
    /// Commit a leased workflow task's outcome (None: the task had nothing to record).
    CompleteWorkflowTask {
        run_key: i64,
        token: i64,
        outcome: Option<Vec<u8>>,
        leased_length: i64,
        eager: Eager,
    },
    /// The worker could not run a leased workflow task: retry it with backoff.
    FailWorkflowTask {
        run_key: i64,
        token: i64,
        message: String,
    },
    /// Record an activity's result together with the workflow task it woke, guarded by the
    /// history length the caller's instance saw; only the result if the run moved on.
    CompleteActivityWithWorkflowTask {
        attempt: HeldAttempt,
        result_row: Vec<u8>,
        expected_length: i64,
        outcome: Vec<u8>,
        eager: Eager,
    },
    /// Record an activity's result; with `eager_queue`, lease the task it woke to the caller.
    CompleteActivityTask {
        attempt: HeldAttempt,
        result: Vec<u8>,
        eager_queue: Option<String>,
        eager_lease_ms: i64,
    },
    FailActivityTask {
        attempt: HeldAttempt,
        failure: Failure,
    },
    HeartbeatActivityTask {
        attempt: HeldAttempt,
        details: Vec<u8>,
    },
    SignalWorkflow {
        workflow_id: String,
        signal_name: String,
        input: Vec<u8>,
    },
    RequestCancelWorkflow {
        workflow_id: String,
        reason: String,
    },
    TerminateWorkflow {
        workflow_id: String,
        reason: String,
    },
    /// Apply due deadlines, then lease ready workflow tasks (see `polls`).
    PollWorkflowTasks {
        task_queue: String,
        lease_ms: i64,
        max_tasks: i64,
    },
    /// Apply due deadlines, then lease ready activity attempts (see `polls`).
    PollActivityTasks {
        task_queue: String,
        max_tasks: i64,
        /// The caller's slots: with them, `max_tasks` is how many it would take, and the
        /// poll leases only as many as it takes from the pool as it runs.
        pool: Option<Arc<SlotPool>>,
    },
    /// A workflow id's latest run.
    DescribeWorkflow {
        workflow_id: String,
    },
    /// A page of runs in key order: up to `page_size` after `after_run_key` (None: from the
    /// first), of `status` and `workflow_type` when given.
    ListWorkflows {
        after_run_key: Option<i64>,
        page_size: i64,
        status: Option<String>,
        workflow_type: Option<String>,
    },
    /// A run's encoded events from `from_event_id` on.
    ReadHistory {
        run_id: String,
        from_event_id: i64,
    },
    /// A closed run's closing event, encoded as a history; nothing while it runs.
    ClosingEvent {
        run_id: String,
    },
    /// The closing events of those runs that closed.
    ClosingEvents {
        run_ids: Vec<String>,
    },
    /// Queue a query for a worker of the workflow's task queue.
    SubmitQuery {
        workflow_id: String,
        name: String,
        input: Vec<u8>,
    },
    /// Take a query waiting for a worker of the queue.
    TakeQuery {
        task_queue: String,
    },
    AnswerQuery {
        query_id: i64,
        result: Option<Vec<u8>>,
        error: Option<String>,
    },
    /// A query's answer if there is one (the query is then deleted); with `give_up`, delete an
    /// unanswered query so no worker answers it late.
    ReadAnswer {
        query_id: i64,
        give_up: bool,
    },
    /// The earliest deadline or ready time a poll would act on.
    NextWakeup,
    /// Tasks ready or leased now, queries waiting, and the next wakeup (time skipping).
    BusyAndWakeup,
    /// SQLite's data version (moves when another process commits).
    DataVersion,
}

impl Operation {
    /// A group of read-only operations takes no write lock.
    pub fn read_only(&self) -> bool {
        matches!(
            self,
            Operation::DescribeWorkflow { .. }
                | Operation::ListWorkflows { .. }
                | Operation::ReadHistory { .. }
                | Operation::ClosingEvent { .. }
                | Operation::ClosingEvents { .. }
                | Operation::NextWakeup
                | Operation::BusyAndWakeup
                | Operation::DataVersion
        )
    }
}

/// An operation and the time (ms since the epoch, or a virtual clock's) it runs at.
#[derive(Clone, Debug)]
pub struct Request {
    pub now: i64,
    pub operation: Operation,
}

/// A workflow task leased to the caller, with the events its cached instance has not seen.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowLease {
    pub lease: WorkflowTaskLease,
    /// Encoded events from `lease.tail_start` on.
    pub tail: Vec<u8>,
}

/// What a workflow task's commit did.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The closing event, encoded as a history, if the task closed the run.
    pub closing: Option<Vec<u8>>,
    /// Attempts inserted already leased to the caller (eager execution).
    pub leases: Vec<ActivityTaskLease>,
    /// Whether the commit left pollers anything (queued work, a timer, a deadline).
    pub wakes_pollers: bool,
    /// The task's events as recorded, encoded; None when it recorded none.
    pub appended: Option<Vec<u8>>,
    /// The history length after the task's events (the events a cached instance that ran
    /// the task knows, once it takes `appended`).
    pub history_length: i64,
}

/// A run as `describe` and `list` report it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub run_key: i64,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
    pub status: &'static str,
    pub history_length: i64,
    pub started_ms: i64,
    pub closed_ms: Option<i64>,
    pub last_task_failure: Option<String>,
    pub task_failures: u32,
    pub dropped_signals: u32,
    /// Whether a worker holds the run's workflow task, and its identity (read by `describe`
    /// only; None in a listing).
    pub workflow_task_leased: bool,
    pub lease_identity: Option<String>,
}

/// A query waiting for a worker of `task_queue`, taken: `(query id, workflow id, run id,
/// name, input)`.
pub type QueryRow = (i64, String, String, String, Vec<u8>);

/// A query's answer: `(result, error)`.
pub type Answer = (Option<Vec<u8>>, Option<String>);

#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Nothing,
    Lease(Option<WorkflowLease>),
    Committed(Committed),
    /// A fused commit whose run had moved on: only the activity's result went in.
    ResultOnly,
    /// A run terminated: its id and closing event.
    Terminated(String, Vec<u8>),
    /// How many deadlines took effect first, and the leases.
    WorkflowPoll(usize, Vec<WorkflowLease>),
    ActivityPoll(usize, Vec<ActivityTaskLease>),
    Run(RunSummary),
    Runs(Vec<RunSummary>),
    Bytes(Vec<u8>),
    Closing(Option<Vec<u8>>),
    Closings(Vec<(String, Vec<u8>)>),
    Query(Option<QueryRow>),
    Answer(Option<Answer>),
    Integer(Option<i64>),
    BusyAndWakeup(i64, Option<i64>),
}

impl Operation {
    /// The caller's slot pool and how many slots the operation would take from it.
    fn slot_pool(&self) -> Option<(&SlotPool, usize)> {
        match self {
            Operation::StartWorkflowWithFirstTask { eager, .. }
            | Operation::CompleteWorkflowTask { eager, .. }
            | Operation::CompleteActivityWithWorkflowTask { eager, .. } => {
                eager.pool.as_deref().map(|pool| (pool, eager.slots))
            }
            Operation::PollActivityTasks {
                max_tasks, pool, ..
            } => pool
                .as_deref()
                .map(|pool| (pool, (*max_tasks).max(0) as usize)),
            _ => None,
        }
    }
}

impl Output {
    /// Activity attempts this output leased to the caller (each holds one of its slots).
    fn attempts_leased(&self) -> usize {
        match self {
            Output::Committed(committed) => committed.leases.len(),
            Output::ActivityPoll(_, leases) => leases.len(),
            _ => 0,
        }
    }
}

/// Runs one operation on the store's connection (inside the caller's transaction). One that
/// leases attempts into the caller's slot pool takes the slots as it runs and gives back what
/// it did not lease.
pub fn execute(store: &mut Store, request: &Request) -> StoreResult<Output> {
    let Some((pool, wanted)) = request.operation.slot_pool() else {
        return run(store, request, None);
    };
    let mut taken = Taken {
        pool,
        slots: pool.take(wanted),
    };
    let result = run(store, request, Some(taken.slots));
    // What it did not lease goes back (all of it if it failed, or panicked: on drop).
    taken.slots -= result
        .as_ref()
        .map_or(0, Output::attempts_leased)
        .min(taken.slots);
    result
}

/// Slots taken from a pool, given back when dropped.
struct Taken<'a> {
    pool: &'a SlotPool,
    slots: usize,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.pool.give(self.slots);
    }
}

/// Gives back the slots an operation's output took, when its transaction did not commit
/// (the attempts it leased were never leased).
pub fn release_slots(request: &Request, output: &Output) {
    if let Some((pool, _)) = request.operation.slot_pool() {
        pool.give(output.attempts_leased());
    }
}

/// `eager` with the slots taken for it, if they were.
fn granted_eager(eager: &Eager, granted: Option<usize>) -> std::borrow::Cow<'_, Eager> {
    match granted {
        None => std::borrow::Cow::Borrowed(eager),
        Some(slots) => std::borrow::Cow::Owned(Eager {
            queue: eager.queue.clone(),
            slots,
            pool: None,
        }),
    }
}

fn run(store: &mut Store, request: &Request, granted: Option<usize>) -> StoreResult<Output> {
    let now = request.now;
    match &request.operation {
        Operation::StartWorkflow {
            run,
            input,
            eager_lease_ms,
        } => runs::start_workflow(store, now, run, input, *eager_lease_ms).map(Output::Lease),
        Operation::StartWorkflowWithFirstTask {
            run,
            started_row,
            outcome,
            eager,
        } => workflow_tasks::start_workflow_with_first_task(
            store,
            now,
            run,
            started_row,
            outcome,
            &granted_eager(eager, granted),
        )
        .map(Output::Committed),
        Operation::CompleteWorkflowTask {
            run_key,
            token,
            outcome,
            leased_length,
            eager,
        } => workflow_tasks::complete_workflow_task(
            store,
            now,
            *run_key,
            *token,
            outcome.as_deref(),
            *leased_length,
            &granted_eager(eager, granted),
        )
        .map(Output::Committed),
        Operation::FailWorkflowTask {
            run_key,
            token,
            message,
        } => workflow_tasks::fail_workflow_task(store, now, *run_key, *token, message)
            .map(|()| Output::Nothing),
        Operation::CompleteActivityWithWorkflowTask {
            attempt,
            result_row,
            expected_length,
            outcome,
            eager,
        } => workflow_tasks::complete_activity_with_workflow_task(
            store,
            now,
            *attempt,
            result_row,
            *expected_length,
            outcome,
            &granted_eager(eager, granted),
        )
        .map(|committed| committed.map_or(Output::ResultOnly, Output::Committed)),
        Operation::CompleteActivityTask {
            attempt,
            result,
            eager_queue,
            eager_lease_ms,
        } => activity_tasks::complete_activity_task(
            store,
            now,
            *attempt,
            result,
            eager_queue.as_deref(),
            *eager_lease_ms,
        )
        .map(Output::Lease),
        Operation::FailActivityTask { attempt, failure } => {
            activity_tasks::fail_activity_task(store, now, *attempt, failure.clone())
                .map(|()| Output::Nothing)
        }
        Operation::HeartbeatActivityTask { attempt, details } => {
            activity_tasks::heartbeat_activity_task(store, now, *attempt, details)
                .map(|()| Output::Nothing)
        }
        Operation::SignalWorkflow {
            workflow_id,
            signal_name,
            input,
        } => runs::signal_workflow(store, now, workflow_id, signal_name, input)
            .map(|()| Output::Nothing),
        Operation::RequestCancelWorkflow {
            workflow_id,
            reason,
        } => {
            runs::request_cancel_workflow(store, now, workflow_id, reason).map(|()| Output::Nothing)
        }
        Operation::TerminateWorkflow {
            workflow_id,
            reason,
        } => runs::terminate_workflow(store, now, workflow_id, reason)
            .map(|(run_id, closing)| Output::Terminated(run_id, closing)),
        Operation::PollWorkflowTasks {
            task_queue,
            lease_ms,
            max_tasks,
        } => polls::poll_workflow_tasks(store, now, task_queue, *lease_ms, *max_tasks)
            .map(|(applied, leases)| Output::WorkflowPoll(applied, leases)),
        Operation::PollActivityTasks {
            task_queue,
            max_tasks,
            ..
        } => polls::poll_activity_tasks(
            store,
            now,
            task_queue,
            granted.map_or(*max_tasks, |slots| slots as i64),
        )
        .map(|(applied, leases)| Output::ActivityPoll(applied, leases)),
        Operation::DescribeWorkflow { workflow_id } => {
            runs::describe_workflow(&store.connection, workflow_id).map(Output::Run)
        }
        Operation::ListWorkflows {
            after_run_key,
            page_size,
            status,
            workflow_type,
        } => runs::list_workflows(
            &store.connection,
            *after_run_key,
            *page_size,
            status.as_deref(),
            workflow_type.as_deref(),
        )
        .map(Output::Runs),
        Operation::ReadHistory {
            run_id,
            from_event_id,
        } => runs::read_history(&store.connection, run_id, *from_event_id).map(Output::Bytes),
        Operation::ClosingEvent { run_id } => {
            runs::closing_event(&store.connection, run_id).map(Output::Closing)
        }
        Operation::ClosingEvents { run_ids } => {
            runs::closing_events(&store.connection, run_ids).map(Output::Closings)
        }
        Operation::SubmitQuery {
            workflow_id,
            name,
            input,
        } => polls::submit_query(&store.connection, now, workflow_id, name, input)
            .map(|query_id| Output::Integer(Some(query_id))),
        Operation::TakeQuery { task_queue } => {
            polls::take_query(&store.connection, task_queue).map(Output::Query)
        }
        Operation::AnswerQuery {
            query_id,
            result,
            error,
        } => polls::answer_query(
            &store.connection,
            *query_id,
            result.as_deref(),
            error.as_deref(),
        )
        .map(|()| Output::Nothing),
        Operation::ReadAnswer { query_id, give_up } => {
            polls::read_answer(&store.connection, *query_id, *give_up).map(Output::Answer)
        }
        Operation::NextWakeup => {
            deadlines::next_wakeup_ms(&store.connection, now).map(Output::Integer)
        }
        Operation::BusyAndWakeup => deadlines::busy_and_wakeup(&store.connection, now)
            .map(|(busy, wakeup)| Output::BusyAndWakeup(busy, wakeup)),
        Operation::DataVersion => {
            polls::data_version(&store.connection).map(|version| Output::Integer(Some(version)))
        }
    }
}
