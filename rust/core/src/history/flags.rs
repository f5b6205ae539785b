//! Engine flags: the bits a task boundary (`WorkflowTaskCompleted.flags`) records to say which
//! engine behaviours its task ran with. Replay of a task follows the behaviour its flags name,
//! so a history recorded before a change replays as it ran. Bits are only ever added.

/// Only a `FailureError` (or a type the workflow or worker lists) fails the run; any other
/// exception fails the workflow task, which is retried. A signal whose payload does not decode
/// is dropped (and logged), not fatal. Without it: any exception fails the run.
pub const TASK_FAILURES: u64 = 1 << 0;
/// Jobs apply in stages within an activation: signals first, the loop runs to idle and
/// conditions are checked, then the workflow's start, timers, activity results and
/// cancellation. Without it: every job applies at once, conditions are checked after.
pub const STAGED_JOBS: u64 = 1 << 1;

/// Every bit this build knows how to replay. A boundary with any other bit was recorded by a
/// newer engine: refused, never guessed at.
pub const KNOWN_FLAGS: u64 = TASK_FAILURES | STAGED_JOBS;

/// What this build records on every task boundary it writes.
pub const ENGINE_FLAGS: u64 = TASK_FAILURES | STAGED_JOBS;

/// The bits of `flags` this build does not know, if any.
pub fn unknown_bits(flags: u64) -> Option<u64> {
    let unknown = flags & !KNOWN_FLAGS;
    (unknown != 0).then_some(unknown)
}
