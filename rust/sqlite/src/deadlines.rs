//! Time: the tick that applies due deadlines (what each does is the rules'; the indexes only
//! find the candidates: every deadline is due at its time, `<= now`), and what a sleeping
//! worker or a time-skipping test needs to know.

use mainspring_core::rules::operations::{self, Context};
use mainspring_core::rules::{tick_batch, Plan};
use rusqlite::{params, Connection};

use mainspring_core::CoreError;

use crate::error::{StoreError, StoreResult};
use crate::open::Store;
use crate::records::{load_activity, load_run, load_timer, persist};

/// A due deadline, in the order the tick applies them (by time, then kind, then key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Timer {
        run_key: i64,
        started_event_id: u64,
    },
    Lease {
        run_key: i64,
    },
    Activity {
        run_key: i64,
        scheduled_event_id: u64,
    },
}

/// Whether a timer, a workflow task's lease or an activity deadline is due at `?1`.
pub(crate) const ANY_DUE_SQL: &str = "SELECT EXISTS (SELECT 1 FROM timers WHERE fire_ms <= ?1) \
     OR EXISTS (SELECT 1 FROM runs WHERE task_state = 2 AND task_deadline_ms <= ?1) \
     OR EXISTS (SELECT 1 FROM activities WHERE next_deadline_ms <= ?1)";
/// Each kind's earliest due deadlines (at most the tick's batch), in index order.
pub(crate) const DUE_TIMERS_SQL: &str =
    "SELECT fire_ms, run_key, started_event_id FROM timers WHERE fire_ms <= ? \
     ORDER BY fire_ms LIMIT ?";
pub(crate) const DUE_LEASES_SQL: &str = "SELECT task_deadline_ms, run_key FROM runs \
     WHERE task_state = 2 AND task_deadline_ms <= ? ORDER BY task_deadline_ms LIMIT ?";
pub(crate) const DUE_ACTIVITIES_SQL: &str =
    "SELECT next_deadline_ms, run_key, scheduled_event_id FROM activities \
     WHERE next_deadline_ms <= ? ORDER BY next_deadline_ms LIMIT ?";
/// The earliest deadline, or ready time after `?1`.
pub(crate) const NEXT_WAKEUP_SQL: &str =
    "SELECT min(coalesce((SELECT MIN(fire_ms) FROM timers), 9223372036854775807), \
             coalesce((SELECT MIN(task_deadline_ms) FROM runs WHERE task_state = 2), \
             9223372036854775807), \
             coalesce((SELECT MIN(task_ready_ms) FROM runs WHERE task_state = 1 \
             AND task_ready_ms > ?1), 9223372036854775807), \
             coalesce((SELECT MIN(ready_ms) FROM activities WHERE state = 0 \
             AND ready_ms > ?1), 9223372036854775807), \
             coalesce((SELECT MIN(next_deadline_ms) FROM activities \
             WHERE next_deadline_ms IS NOT NULL), 9223372036854775807))";

/// Whether a timer, a workflow task's lease or an activity deadline is due at `now`: one
/// statement, the common answer being no.
fn any_due(connection: &Connection, now: i64) -> StoreResult<bool> {
    Ok(connection
        .prepare_cached(ANY_DUE_SQL)?
        .query_row([now], |row| row.get(0))?)
}

/// Each kind's earliest `limit` due deadlines, in the tick's order, cut to `limit`.
fn due_at(connection: &Connection, now: i64, limit: usize) -> StoreResult<Vec<(i64, Due)>> {
    let mut due = Vec::new();
    let limit = limit.max(1) as i64;
    let mut timers = connection.prepare_cached(DUE_TIMERS_SQL)?;
    for found in timers.query_map(params![now, limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            Due::Timer {
                run_key: row.get(1)?,
                started_event_id: row.get::<_, i64>(2)? as u64,
            },
        ))
    })? {
        due.push(found?);
    }
    let mut leases = connection.prepare_cached(DUE_LEASES_SQL)?;
    for found in leases.query_map(params![now, limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            Due::Lease {
                run_key: row.get(1)?,
            },
        ))
    })? {
        due.push(found?);
    }
    let mut activities = connection.prepare_cached(DUE_ACTIVITIES_SQL)?;
    for found in activities.query_map(params![now, limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            Due::Activity {
                run_key: row.get(1)?,
                scheduled_event_id: row.get::<_, i64>(2)? as u64,
            },
        ))
    })? {
        due.push(found?);
    }
    Ok(tick_batch(due, limit as usize))
}

/// Applies the earliest `tick_batch` deadlines at or before `now` (the rest are due at the
/// next tick); returns how many took effect.
pub fn tick(store: &mut Store, now: i64) -> StoreResult<usize> {
    if !any_due(&store.connection, now)? {
        return Ok(0);
    }
    let due = due_at(&store.connection, now, store.config.tick_batch)?;
    let mut applied = 0;
    for (_, item) in due {
        let (connection, mut context) = store.split(now);
        let (run_key, plan) = match decide_due(connection, &mut context, item) {
            Ok((run_key, plan)) if !plan.is_empty() => (run_key, plan),
            // A corrupt row fails the poll, loudly (the worker logs it and waits a poll
            // interval), rather than being skipped and found due again at once, forever.
            Err(StoreError::Core(CoreError::CorruptRecord(message))) => {
                return Err(CoreError::CorruptRecord(message).into())
            }
            // Nothing due after all, or a candidate the rules refuse: skipped, as every store
            // skips it.
            Ok(_) | Err(StoreError::Core(_)) => continue,
            Err(error) => return Err(error),
        };
        persist(connection, Some(run_key), &plan)?;
        applied += 1;
    }
    Ok(applied)
}

/// Loads what a due deadline concerns and has the rules decide: `(its run's key, the plan)`.
fn decide_due(
    connection: &Connection,
    context: &mut Context<'_>,
    item: Due,
) -> StoreResult<(i64, Plan)> {
    Ok(match item {
        Due::Timer {
            run_key,
            started_event_id,
        } => {
            let Some(timer) = load_timer(connection, run_key, started_event_id)? else {
                return Ok((run_key, Plan::default()));
            };
            let run = load_run(connection, run_key)?;
            (run_key, operations::fire_timer(context, run, timer))
        }
        Due::Lease { run_key } => {
            let run = load_run(connection, run_key)?;
            (
                run_key,
                operations::expire_workflow_task_lease(context, run),
            )
        }
        Due::Activity {
            run_key,
            scheduled_event_id,
        } => {
            let Some(activity) = load_activity(connection, run_key, scheduled_event_id)? else {
                return Ok((run_key, Plan::default()));
            };
            let run = load_run(connection, run_key)?;
            let plan = operations::apply_activity_deadline(context, run, activity)?;
            (run_key, plan)
        }
    })
}

/// The earliest deadline, or ready time still ahead, that a poll would act on.
pub fn next_wakeup_ms(connection: &Connection, now: i64) -> StoreResult<Option<i64>> {
    Ok(connection
        .prepare_cached(NEXT_WAKEUP_SQL)?
        .query_row([now], |row| row.get::<_, i64>(0))
        .map(|earliest| (earliest != i64::MAX).then_some(earliest))?)
}

/// Tasks ready or leased now and queries waiting (zero: nothing happens before the next
/// wakeup), and that wakeup.
pub fn busy_and_wakeup(connection: &Connection, now: i64) -> StoreResult<(i64, Option<i64>)> {
    let busy: i64 = connection
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM runs WHERE (task_state = 1 AND task_ready_ms <= ?1) \
             OR task_state = 2) + (SELECT COUNT(*) FROM activities WHERE (state = 0 AND \
             ready_ms <= ?1) OR state = 1) + (SELECT COUNT(*) FROM queries WHERE state < 2)",
        )?
        .query_row(params![now], |row| row.get(0))?;
    Ok((busy, next_wakeup_ms(connection, now)?))
}
