//! What the core hands to workflow code: one batch of jobs per workflow task.

use crate::history::{Failure, Payload, TimeoutType};

#[derive(Clone, Debug, PartialEq)]
pub enum ActivityResolution {
    Completed {
        result: Payload,
    },
    Failed {
        failure: Box<Failure>,
    },
    TimedOut {
        timeout_type: TimeoutType,
        last_failure: Option<Box<Failure>>,
    },
    Canceled,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    StartWorkflow {
        workflow_type: String,
        workflow_id: String,
        run_id: String,
        task_queue: String,
        input: Payload,
    },
    ResolveActivity {
        seq: u32,
        attempt: u32,
        resolution: ActivityResolution,
    },
    FireTimer {
        seq: u32,
    },
    Signal {
        name: String,
        input: Payload,
    },
    CancelWorkflow {
        reason: String,
    },
}

/// One batch of jobs. `now_ms` is the workflow task's time, which `ctx.now()` returns: on replay
/// the time recorded on the task's boundary event, so replay sees the same clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    pub replaying: bool,
    pub now_ms: i64,
    pub jobs: Vec<Job>,
    /// The engine flags the workflow code must run this activation with
    /// ([`crate::history::flags`]): a replayed task's recorded flags, or this build's for a
    /// live one.
    pub flags: u64,
}
