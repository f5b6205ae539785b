//! Group commit: many operations in one transaction, one fsync.

use crate::error::{StoreError, StoreResult};
use crate::open::Store;
use crate::operation::{execute, release_slots, Output, Request};

/// Runs the group in one transaction and returns each operation's result. First without
/// savepoints (the common case: nothing fails); if an operation fails, the transaction is
/// rolled back and the group re-run with a savepoint per operation, so only the failing ones
/// are undone. If the transaction itself fails, every operation gets `NotCommitted`.
pub fn run_group(store: &mut Store, requests: &[Request]) -> Vec<StoreResult<Output>> {
    // A group of reads needs no write lock: it neither waits for other processes' writers nor
    // makes them wait, and its commit syncs nothing.
    let reads_only = requests.iter().all(|request| request.operation.read_only());
    let outcome = match attempt(store, requests, reads_only, false) {
        Ok(None) => attempt(store, requests, reads_only, true),
        other => other,
    };
    match outcome {
        Ok(Some(results)) => results,
        Ok(None) => unreachable!("an isolated run always completes"),
        Err(error) => {
            // Nothing of this group was committed; leave no transaction open.
            let _ = store.connection.execute_batch("ROLLBACK");
            let failure = StoreError::NotCommitted(error.to_string());
            requests.iter().map(|_| Err(failure.clone())).collect()
        }
    }
}

/// One transaction over the group. Without `isolate`, returns None (having rolled back) as
/// soon as an operation fails.
fn attempt(
    store: &mut Store,
    requests: &[Request],
    reads_only: bool,
    isolate: bool,
) -> rusqlite::Result<Option<Vec<StoreResult<Output>>>> {
    let begin = if reads_only {
        "BEGIN"
    } else {
        "BEGIN IMMEDIATE"
    };
    store.connection.execute_batch(begin)?;
    let mut results = Uncommitted {
        requests,
        results: Vec::with_capacity(requests.len()),
    };
    if run_all(store, requests, isolate, &mut results.results)? {
        Ok(Some(std::mem::take(&mut results.results)))
    } else {
        Ok(None)
    }
}

/// Results of a transaction not (yet) committed. Dropped with any (rolled back, the commit
/// failed, an operation panicked), they give back the slots their operations leased into:
/// those attempts were never leased.
struct Uncommitted<'a> {
    requests: &'a [Request],
    results: Vec<StoreResult<Output>>,
}

impl Drop for Uncommitted<'_> {
    fn drop(&mut self) {
        for (request, result) in self.requests.iter().zip(&self.results) {
            if let Ok(output) = result {
                release_slots(request, output);
            }
        }
    }
}

/// The operations, then the commit; false if one failed unisolated (rolled back).
fn run_all(
    store: &mut Store,
    requests: &[Request],
    isolate: bool,
    results: &mut Vec<StoreResult<Output>>,
) -> rusqlite::Result<bool> {
    for request in requests {
        if !isolate {
            match execute(store, request) {
                Ok(output) => results.push(Ok(output)),
                Err(_) => {
                    store.connection.execute_batch("ROLLBACK")?;
                    return Ok(false);
                }
            }
            continue;
        }
        store.connection.execute_batch("SAVEPOINT operation")?;
        let result = execute(store, request);
        let failed = result.is_err();
        results.push(result);
        // (Pushed first: if the savepoint's end fails, what it leased is given back too.)
        if failed {
            store.connection.execute_batch("ROLLBACK TO operation")?;
        }
        store.connection.execute_batch("RELEASE operation")?;
    }
    store.connection.execute_batch("COMMIT")?;
    Ok(true)
}
