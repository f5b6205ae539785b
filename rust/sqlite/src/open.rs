//! Opening the file: WAL, the durability level, the busy timeout.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use mainspring_core::rules::operations::Context;
use mainspring_core::rules::{RulesConfig, SplitMixTokens};
use rusqlite::Connection;

use crate::error::{StoreError, StoreResult};
use crate::schema::migrate;

/// The connection and what the native operations decide with. One per `SqliteStorage`; the
/// executor's thread and the event loop's thread take turns on it (one group at a time).
pub struct Store {
    pub connection: Connection,
    pub(crate) tokens: SplitMixTokens,
    pub(crate) config: RulesConfig,
}

impl Store {
    /// The connection, and a context for deciding at `now_ms` (they borrow different parts
    /// of the store, so an operation holds both).
    pub(crate) fn split(&mut self, now_ms: i64) -> (&Connection, Context<'_>) {
        (
            &self.connection,
            Context {
                now_ms,
                config: &self.config,
                tokens: &mut self.tokens,
            },
        )
    }
}

/// Opens (creating if missing) the file in WAL mode with `synchronous` (`FULL` or `NORMAL`)
/// and brings its schema up to date.
pub fn open(
    path: &str,
    busy_timeout_ms: u64,
    synchronous: &str,
    config: RulesConfig,
    identity: &str,
) -> StoreResult<Store> {
    if !matches!(synchronous, "FULL" | "NORMAL") {
        return Err(StoreError::Sqlite(format!(
            "synchronous is FULL or NORMAL, not {synchronous}"
        )));
    }
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_millis(busy_timeout_ms))?;
    enter_wal_mode(&connection, busy_timeout_ms)?;
    connection.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF"
    ))?;
    // Every statement of the operations stays prepared.
    connection.set_prepared_statement_cache_capacity(256);
    migrate(&connection)?;
    // This process's identity, which the run writes that take a lease record as its holder
    // (`records.rs`): a connection's own temporary table, so the statements stay constants.
    connection.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS mainspring_session \
         (key INTEGER PRIMARY KEY, identity TEXT NOT NULL)",
    )?;
    connection.execute(
        "INSERT OR REPLACE INTO temp.mainspring_session (key, identity) VALUES (1, ?)",
        [identity],
    )?;
    Ok(Store {
        connection,
        tokens: SplitMixTokens::from_seed(token_seed()),
        config,
    })
}

/// A seed for this store's fencing tokens, unpredictable to other processes' stores.
#[allow(clippy::disallowed_methods)] // Not the core: the clock only adds entropy here.
fn token_seed() -> u64 {
    // std's RandomState keys come from the OS; the process id and the time keep a forked
    // child, which inherits those keys, from drawing its parent's sequence.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.finish()
}

/// Switches a new file to WAL. The switch needs the file to itself, and SQLite does not wait
/// for that with the busy timeout: when several processes open a new file at once, all but one
/// are refused for a moment. So it is retried here, up to that timeout.
#[allow(clippy::disallowed_methods)] // Not the core: waiting on a lock needs the clock.
fn enter_wal_mode(connection: &Connection, busy_timeout_ms: u64) -> StoreResult<()> {
    let deadline = std::time::Instant::now() + Duration::from_millis(busy_timeout_ms);
    let mut delay = Duration::from_millis(1);
    loop {
        match connection.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        }) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) => {}
            Err(error) => return Err(error.into()),
        }
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::Sqlite(
                "cannot switch to WAL mode: the file stays locked".into(),
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
