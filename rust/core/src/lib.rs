//! Pure-Rust core of Mainspring.
//!
//! Four parts, none of which does I/O or reads the clock (time always comes in as an argument):
//! - [`history`]: typed events, the versioned binary codec, lossless JSON and validation.
//! - [`replay`]: the per-run replay state machine behind the activation/completion protocol.
//! - [`rules`]: every transition rule of the task dispatcher (start, lease, commit, wake,
//!   backoff, retries, the four activity timeouts, cancel, close, deadlines), as decisions
//!   over the records a store keeps; every store persists what they decide.
//! - [`memory`]: the in-memory store, an adapter over [`rules`].

pub mod error;
pub mod history;
pub mod memory;
pub mod replay;
pub mod rules;

pub use error::{CoreError, CoreResult};
