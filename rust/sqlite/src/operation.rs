//! The native operations: what a caller asks for, what it gets back, and the dispatch between
//! them. Each runs inside a transaction its group opened and either does all of its work or
//! fails (and its group rolls it back).

use crate::activity_tasks;
use crate::error::StoreResult;
use crate::open::Store;
use crate::polls::{self, QueryRow};
use crate::runs;
pub use crate::runs::NewRun;
use crate::workflow_tasks;

/// Where a commit may hand activity attempts straight to its caller: the caller's task queue
/// and how many attempts it can start now (eager execution).
#[derive(Clone, Debug, Default)]
pub struct Eager {
    pub queue: Option<String>,
    pub slots: usize,
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
    /// Commit a leased workflow task's outcome (None: the task only ran queries).
    CompleteWorkflowTask {
        run_key: i64,
        token: i64,
        outcome: Option<Vec<u8>>,
        leased_length: i64,
        eager: Eager,
    },
    /// Record an activity's result together with the workflow task it woke, guarded by the
    /// history length the caller's instance saw; only the result if the run moved on.
    CompleteActivityWithWorkflowTask {
        activity_id: i64,
        token: i64,
        result: Vec<u8>,
        result_row: Vec<u8>,
        expected_length: i64,
        outcome: Vec<u8>,
        eager: Eager,
    },
    /// Record an activity's result; with `eager_queue`, lease the task it woke to the caller.
    CompleteActivityTask {
        activity_id: i64,
        token: i64,
        result: Vec<u8>,
        eager_queue: Option<String>,
        eager_lease_ms: i64,
    },
    /// A closed run's closing event, encoded as a history; nothing while it runs.
    ClosingEvent { run_id: String },
    /// Lease ready workflow tasks (see `polls`).
    PollWorkflowTasks {
        task_queue: String,
        lease_ms: i64,
        max_tasks: i64,
        check_due: bool,
    },
    /// Lease ready activity attempts (see `polls`).
    PollActivityTasks {
        task_queue: String,
        max_tasks: i64,
        check_due: bool,
    },
    /// Take a query waiting for a worker of the queue.
    TakeQuery { task_queue: String },
    /// The earliest deadline or ready time a poll would act on.
    NextWakeup,
    /// SQLite's data version (moves when another process commits).
    DataVersion,
    /// The closing events of those runs that closed.
    ClosingEvents { run_ids: Vec<String> },
}

impl Operation {
    /// A group of read-only operations takes no write lock.
    pub fn read_only(&self) -> bool {
        matches!(
            self,
            Operation::ClosingEvent { .. }
                | Operation::NextWakeup
                | Operation::DataVersion
                | Operation::ClosingEvents { .. }
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
    pub run_key: i64,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub history_length: i64,
    pub token: i64,
    pub tail_start: i64,
    /// Encoded events from `tail_start` on.
    pub tail: Vec<u8>,
}

/// An activity attempt leased to the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityLease {
    pub activity_id: i64,
    pub token: i64,
    pub workflow_id: String,
    pub run_id: String,
    pub activity_type: String,
    pub input: Vec<u8>,
    pub attempt: i64,
    pub heartbeat_details: Vec<u8>,
    pub scheduled_ms: i64,
    pub started_ms: i64,
    pub deadline_ms: Option<i64>,
    pub heartbeat_ms: Option<i64>,
    pub scheduled_event_id: i64,
}

/// What a workflow task's commit did.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The closing event, encoded as a history, if the task closed the run.
    pub closing: Option<Vec<u8>>,
    /// Attempts inserted already leased to the caller (eager execution).
    pub leases: Vec<ActivityLease>,
    /// Whether the commit left pollers anything (queued work, a timer, a deadline).
    pub wakes_pollers: bool,
    /// The task's events as recorded, encoded; None when it recorded none.
    pub appended: Option<Vec<u8>>,
    pub history_length: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Lease(Option<WorkflowLease>),
    Committed(Committed),
    /// A fused commit whose run had moved on: only the activity's result went in.
    ResultOnly,
    Closing(Option<Vec<u8>>),
    /// Whether a deadline is due (then nothing was leased), and the leases.
    WorkflowPoll(bool, Vec<WorkflowLease>),
    ActivityPoll(bool, Vec<ActivityLease>),
    Query(Option<QueryRow>),
    Integer(Option<i64>),
    Closings(Vec<(String, Vec<u8>)>),
}

/// Runs one operation on the store's connection (inside the caller's transaction).
pub fn execute(store: &mut Store, request: &Request) -> StoreResult<Output> {
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
            eager,
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
            eager,
        )
        .map(Output::Committed),
        Operation::CompleteActivityWithWorkflowTask {
            activity_id,
            token,
            result,
            result_row,
            expected_length,
            outcome,
            eager,
        } => workflow_tasks::complete_activity_with_workflow_task(
            store,
            now,
            workflow_tasks::FusedResult {
                activity_id: *activity_id,
                token: *token,
                result,
                result_row,
                expected_length: *expected_length,
            },
            outcome,
            eager,
        )
        .map(|committed| committed.map_or(Output::ResultOnly, Output::Committed)),
        Operation::CompleteActivityTask {
            activity_id,
            token,
            result,
            eager_queue,
            eager_lease_ms,
        } => activity_tasks::complete_activity_task(
            store,
            now,
            *activity_id,
            *token,
            result,
            eager_queue.as_deref(),
            *eager_lease_ms,
        )
        .map(Output::Lease),
        Operation::ClosingEvent { run_id } => {
            runs::closing_event(&store.connection, run_id).map(Output::Closing)
        }
        Operation::PollWorkflowTasks {
            task_queue,
            lease_ms,
            max_tasks,
            check_due,
        } => polls::poll_workflow_tasks(store, now, task_queue, *lease_ms, *max_tasks, *check_due)
            .map(|(due, leases)| Output::WorkflowPoll(due, leases)),
        Operation::PollActivityTasks {
            task_queue,
            max_tasks,
            check_due,
        } => polls::poll_activity_tasks(store, now, task_queue, *max_tasks, *check_due)
            .map(|(due, leases)| Output::ActivityPoll(due, leases)),
        Operation::TakeQuery { task_queue } => {
            polls::take_query(&store.connection, task_queue).map(Output::Query)
        }
        Operation::NextWakeup => polls::next_wakeup_ms(&store.connection, now).map(Output::Integer),
        Operation::DataVersion => {
            polls::data_version(&store.connection).map(|version| Output::Integer(Some(version)))
        }
        Operation::ClosingEvents { run_ids } => {
            polls::closing_events(&store.connection, run_ids).map(Output::Closings)
        }
    }
}
