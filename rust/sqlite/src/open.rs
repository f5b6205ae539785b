//! Opening the file: WAL, the durability level, the busy timeout.

use std::time::Duration;

use rusqlite::Connection;

use crate::error::{StoreError, StoreResult};
use crate::schema::migrate;
use crate::tokens::Tokens;

/// The connection and what the native operations draw from. One per `SqliteStorage`; the
/// executor's thread and the event loop's thread take turns on it (one group at a time).
pub struct Store {
    pub connection: Connection,
    pub(crate) tokens: Tokens,
}

/// Opens (creating if missing) the file in WAL mode with `synchronous` (`FULL` or `NORMAL`)
/// and brings its schema up to date.
pub fn open(path: &str, busy_timeout_ms: u64, synchronous: &str) -> StoreResult<Store> {
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
    // Every statement of the operations (native and Python) stays prepared.
    connection.set_prepared_statement_cache_capacity(256);
    migrate(&connection)?;
    Ok(Store {
        connection,
        tokens: Tokens::seeded(),
    })
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
