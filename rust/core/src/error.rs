//! The one error type of the core. Bindings map each variant to a Python exception class.

use thiserror::Error;

pub type CoreResult<T> = Result<T, CoreError>;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// Bytes or JSON that do not decode to a history.
    #[error("corrupt history: {0}")]
    CorruptHistory(String),
    /// A history written by a newer engine: a format version, an event kind or engine flag
    /// bits this build does not know. Never guessed at: replaying it could go wrong silently.
    #[error("history from a newer engine: {0}")]
    UnsupportedHistory(String),
    /// A history that decodes but breaks an invariant (dense ids, references, terminal event).
    #[error("invalid history at event {event_id}: {reason}")]
    InvalidHistory { event_id: u64, reason: String },
    /// Replayed workflow code issued a command that does not match the recorded event.
    #[error("[MS1100] non-determinism at event {event_id}: history recorded {recorded}, workflow code now issued {issued}")]
    NonDeterminism {
        event_id: u64,
        recorded: String,
        issued: String,
    },
    /// Workflow code issued a command that makes no sense (unknown sequence number, ...).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    #[error("workflow not found: {0}")]
    WorkflowNotFound(String),
    #[error("workflow already started: {0}")]
    WorkflowAlreadyStarted(String),
    #[error("workflow is not running: {0}")]
    WorkflowNotRunning(String),
    /// A task token whose lease expired or whose task was already finished (fencing).
    #[error("task is no longer held by this worker: {0}")]
    StaleTask(String),
    /// A stored record (a row of a store's tables) that does not decode.
    #[error("corrupt record: {0}")]
    CorruptRecord(String),
    /// A compare-and-set failed: another writer changed a record after it was loaded, so
    /// nothing was written (the operation may be decided again on fresh records).
    #[error("another writer changed the store first: {0}")]
    Conflict(String),
}
