//! What an operation decided, for its store to persist: the changes to one run's records.
//!
//! Every operation concerns one run: its record, its new events, its activities and timers.
//! A store persists a plan in one transaction, in this order: the run's record, its events,
//! the activity and timer writes, then (if the run closed) the deletion of whatever work it
//! still had pending. Each write of a record that existed is fenced by the version it was
//! loaded at: `UPDATE ... WHERE key AND version = expected` (or `DELETE`), and a row count of
//! zero means another writer got there first, so the store must not commit (it reloads and
//! decides again, or reports the conflict). New runs are fenced by the store's unique index
//! over open runs' workflow ids: a store inserts a new run open, whatever its record says (a
//! fused start whose first task closed it), so the index sees it, then closes it.

use super::activity::{ActivityRecord, TimerRecord};
use super::run::RunRecord;
use super::tokens::TokenSource;
use crate::history::{Event, EventAttributes};

/// The run's record after the operation.
#[derive(Clone, Debug, PartialEq)]
pub struct RunChange {
    /// The version the record was loaded at (the compare-and-set), or None for a new run.
    pub expected_version: Option<i64>,
    /// The record to write; its version is already the next one.
    pub record: RunRecord,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ActivityWrite {
    Insert(ActivityRecord),
    Update {
        expected_version: i64,
        record: ActivityRecord,
    },
    Delete {
        scheduled_event_id: u64,
        expected_version: i64,
    },
}

/// Timers never change once set. A cancelled timer is deleted if it is still there (if it
/// fired meanwhile, that changed the run, whose compare-and-set then fails); a fired one must
/// still be there, or another writer fired it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerWrite {
    Insert(TimerRecord),
    /// Delete the timer if it is pending.
    Cancel {
        started_event_id: u64,
    },
    /// Delete the timer, which must be pending (fenced: row count 1).
    Fire {
        started_event_id: u64,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// None: the run's record stays as it is.
    pub run: Option<RunChange>,
    /// Events to append, numbered, in order.
    pub events: Vec<Event>,
    pub activities: Vec<ActivityWrite>,
    pub timers: Vec<TimerWrite>,
    /// The run closed: delete every activity and timer it still has.
    pub drop_pending_work: bool,
}

impl Plan {
    /// A plan that changes `run`, loaded at its current version. The version it writes is
    /// drawn fresh, not counted on: versions are unique, so a write decided on a state that
    /// was never stored (a decision chained on one whose write failed) can match nothing.
    pub fn update(mut run: RunRecord, tokens: &mut dyn TokenSource) -> Self {
        let expected = run.version;
        run.version = tokens.next_token();
        Plan {
            run: Some(RunChange {
                expected_version: Some(expected),
                record: run,
            }),
            ..Plan::default()
        }
    }

    /// A plan that records a new run.
    pub fn insert(run: RunRecord) -> Self {
        Plan {
            run: Some(RunChange {
                expected_version: None,
                record: run,
            }),
            ..Plan::default()
        }
    }

    /// The run as the plan leaves it. Only for plans made by [`Plan::update`] or
    /// [`Plan::insert`].
    pub fn record(&self) -> &RunRecord {
        &self.run.as_ref().expect("the plan changes its run").record
    }

    pub fn record_mut(&mut self) -> &mut RunRecord {
        &mut self.run.as_mut().expect("the plan changes its run").record
    }

    /// Appends one event at `now_ms` and returns its id.
    pub fn append(&mut self, now_ms: i64, attributes: EventAttributes) -> u64 {
        let event_id = self.record_mut().append(1);
        self.events.push(Event {
            event_id,
            timestamp_ms: now_ms,
            attributes,
        });
        event_id
    }

    /// Deletes an activity loaded at its current version.
    pub fn delete_activity(&mut self, activity: &ActivityRecord) {
        self.activities.push(ActivityWrite::Delete {
            scheduled_event_id: activity.scheduled_event_id,
            expected_version: activity.version,
        });
    }

    /// Writes an activity loaded at `expected_version` and changed since (at a fresh version,
    /// as [`Plan::update`]).
    pub fn update_activity(
        &mut self,
        expected_version: i64,
        mut activity: ActivityRecord,
        tokens: &mut dyn TokenSource,
    ) {
        activity.version = tokens.next_token();
        self.activities.push(ActivityWrite::Update {
            expected_version,
            record: activity,
        });
    }

    /// The last event appended (a closed run's closing event).
    pub fn last_event(&self) -> Option<&Event> {
        self.events.last()
    }
}

impl Plan {
    /// Nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.run.is_none()
            && self.events.is_empty()
            && self.activities.is_empty()
            && self.timers.is_empty()
            && !self.drop_pending_work
    }

    /// Whether persisting this leaves pollers something they may act on: a queued workflow
    /// task or attempt, or a new timer (a deadline to wake for). Work leased straight to the
    /// caller wakes nobody.
    pub fn wakes_pollers(&self) -> bool {
        if self.drop_pending_work {
            return false;
        }
        let run_queued = self
            .run
            .as_ref()
            .is_some_and(|change| change.record.ready_at_ms().is_some());
        let attempt_queued = self.activities.iter().any(|write| match write {
            ActivityWrite::Insert(record) | ActivityWrite::Update { record, .. } => {
                record.ready_at_ms().is_some()
            }
            ActivityWrite::Delete { .. } => false,
        });
        let timer_set = self
            .timers
            .iter()
            .any(|write| matches!(write, TimerWrite::Insert(_)));
        run_queued || attempt_queued || timer_set
    }
}
