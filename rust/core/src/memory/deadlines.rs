//! Time in the memory store: the tick that applies due deadlines (what each does is the
//! rules'), and what a sleeping worker or a time-skipping test needs to know.

use super::{ActivityKey, MemoryStore};
use crate::rules::operations;

/// A due deadline, in the order the tick applies them (by time, then kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Timer(ActivityKey),
    Lease(i64),
    Activity(ActivityKey),
}

impl MemoryStore {
    /// Applies the deadlines at or before `now_ms` (a deadline is due at its time), the
    /// earliest `tick_batch` of them: timers fire, lapsed leases are re-queued, activity
    /// timeouts retry or resolve. Returns how many took effect.
    pub fn tick(&mut self, now_ms: i64) -> usize {
        // Each index's earliest `limit` (they are ordered by time): the batch is among them.
        let limit = self.config.tick_batch.max(1);
        let mut due: Vec<(i64, Due)> = Vec::new();
        due.extend(
            self.timer_deadlines
                .range(..=(now_ms, (i64::MAX, u64::MAX)))
                .take(limit)
                .map(|&(at, key)| (at, Due::Timer(key))),
        );
        due.extend(
            self.workflow_leases
                .range(..=(now_ms, i64::MAX))
                .take(limit)
                .map(|&(at, key)| (at, Due::Lease(key))),
        );
        due.extend(
            self.activity_deadlines
                .range(..=(now_ms, (i64::MAX, u64::MAX)))
                .take(limit)
                .map(|&(at, key)| (at, Due::Activity(key))),
        );
        let due = crate::rules::tick_batch(due, limit);
        let mut applied = 0;
        for (_, item) in due {
            if self.apply_due(item, now_ms) {
                applied += 1;
            }
        }
        applied
    }

    fn apply_due(&mut self, item: Due, now_ms: i64) -> bool {
        let run_key = match item {
            Due::Timer((run_key, _)) | Due::Activity((run_key, _)) | Due::Lease(run_key) => run_key,
        };
        let Ok(run) = self.load_run(run_key) else {
            return false;
        };
        let plan = match item {
            Due::Timer(key) => {
                let Some(&timer) = self.timers.get(&key) else {
                    return false;
                };
                self.decide(now_ms, |context| {
                    operations::fire_timer(context, run, timer)
                })
            }
            Due::Lease(_) => self.decide(now_ms, |context| {
                operations::expire_workflow_task_lease(context, run)
            }),
            Due::Activity(key) => {
                let Ok(activity) = self.load_activity(key) else {
                    return false;
                };
                match self.decide(now_ms, |context| {
                    operations::apply_activity_deadline(context, run, activity)
                }) {
                    Ok(plan) => plan,
                    Err(_) => return false,
                }
            }
        };
        !plan.is_empty() && self.persist(Some(run_key), plan).is_ok()
    }

    /// The earliest time after which a poll could find work that is not there at `now_ms`:
    /// a deadline that needs a [`MemoryStore::tick`], or a task whose ready time (retry
    /// backoff) is still ahead. Tasks ready now do not count: a poller that found none of its
    /// own kind should sleep until something changes, not spin on another kind's queue.
    pub fn next_wakeup_ms(&self, now_ms: i64) -> Option<i64> {
        let timer = self.timer_deadlines.first().map(|(at, _)| *at);
        let lease = self.workflow_leases.first().map(|(at, _)| *at);
        let activity = self.activity_deadlines.first().map(|(at, _)| *at);
        let queued_workflow_tasks = self
            .workflow_queues
            .values()
            .filter_map(|queue| queue.range((now_ms.saturating_add(1), i64::MIN)..).next())
            .map(|(at, _)| *at);
        let queued_attempts = self
            .activity_queues
            .values()
            .filter_map(|queue| {
                queue
                    .range((now_ms.saturating_add(1), (i64::MIN, 0))..)
                    .next()
            })
            .map(|(at, _)| *at);
        [timer, lease, activity]
            .into_iter()
            .flatten()
            .chain(queued_workflow_tasks)
            .chain(queued_attempts)
            .min()
    }

    /// Tasks that are ready to hand out or leased right now. Zero means nothing can happen
    /// before [`MemoryStore::next_wakeup_ms`]: what a test's time skipping waits for.
    pub fn busy_count(&self, now_ms: i64) -> usize {
        let ready_workflow_tasks: usize = self
            .workflow_queues
            .values()
            .map(|queue| queue.range(..=(now_ms, i64::MAX)).count())
            .sum();
        let ready_attempts: usize = self
            .activity_queues
            .values()
            .map(|queue| queue.range(..=(now_ms, (i64::MAX, u64::MAX))).count())
            .sum();
        ready_workflow_tasks + ready_attempts + self.workflow_leases.len() + self.running_attempts
    }
}
