//! The replay state machine: turns a run's history into activations (batches of jobs for the
//! workflow code) and the workflow code's completions (batches of commands) into new events, or,
//! on replay, checks them against the recorded ones.
//!
//! One workflow task is one activation: the inbound events the task had seen (those after the
//! previous task's `seen_event_id`, up to its own) go out as jobs; the commands that come back are
//! recorded right after the task's `WorkflowTaskCompleted` boundary. Replay walks the same
//! boundaries, so a signal that arrived while a task was running is delivered in the same later
//! activation on replay as it was live.

mod activation;
mod activity_machine;
mod commands;
mod seq_table;
mod timer_machine;
mod workflow_run;

pub use activation::{Activation, ActivityResolution, Job};
pub use activity_machine::ActivityState;
pub use commands::Command;
pub use timer_machine::TimerState;
pub use workflow_run::{WorkflowRun, ENGINE_FLAGS};
