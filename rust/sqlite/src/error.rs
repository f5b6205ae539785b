//! What a native operation or group can fail with. Bindings map each to a typed exception of
//! `mainspring.errors`.

use mainspring_core::CoreError;
use thiserror::Error;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Error, Clone)]
pub enum StoreError {
    /// The operation broke a rule (stale task, duplicate workflow, invalid outcome).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// SQLite refused a statement of this operation; the operation's work was rolled back.
    #[error("SQLite failed: {0}")]
    Sqlite(String),
    /// The group's transaction itself failed (locked past the busy timeout, disk full, I/O
    /// error): nothing of the group was committed.
    #[error("SQLite failed; nothing was committed: {0}")]
    NotCommitted(String),
    /// The store was closed.
    #[error("the storage is closed")]
    Closed,
    /// Used in a process forked after the store was opened.
    #[error("a SqliteStorage does not survive fork(): open one in the child process")]
    Forked,
    /// A bug in this crate, caught so the interpreter lives on.
    #[error("{0}")]
    Panic(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Sqlite(error.to_string())
    }
}
