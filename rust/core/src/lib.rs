//! Pure-Rust core of Mainspring.
//!
//! Three parts, none of which does I/O or reads the clock (time always comes in as an argument):
//! - [`history`]: typed events, the versioned binary codec, lossless JSON and validation.
//! - [`replay`]: the per-run replay state machine behind the activation/completion protocol.
//! - [`dispatch`]: task queues, leases, timers, timeouts and retries (the in-memory store).

pub mod dispatch;
pub mod error;
pub mod history;
pub mod replay;

pub use error::{CoreError, CoreResult};
