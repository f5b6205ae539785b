//! The in-memory store behind `MemoryStorage`: an adapter over [`crate::rules`] like any
//! other store. It keeps the records in maps (its tables), indexes them by what polls and the
//! tick look for, and persists [`Plan`]s with the same compare-and-set a database store uses
//! (here it can only fail through a bug, as one thread owns the maps).

mod deadlines;
mod store;

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{CoreError, CoreResult};
use crate::history::Event;
use crate::rules::{
    ActivityRecord, ActivityWrite, CountingTokens, Plan, RulesConfig, RunChange, RunRecord,
    TimerRecord, TimerWrite,
};

pub use crate::rules::{ActivityTaskLease, WorkflowTaskLease};
pub use store::RunSummary;

/// An activity's key: its run's key and its ActivityScheduled event's id.
pub type ActivityKey = (i64, u64);

pub(crate) struct MemoryRun {
    pub record: RunRecord,
    pub events: Vec<Event>,
}

pub struct MemoryStore {
    pub(crate) config: RulesConfig,
    pub(crate) tokens: CountingTokens,
    /// Runs by key (the index).
    pub(crate) runs: Vec<MemoryRun>,
    /// A workflow id's latest run, open or closed (what `describe` reports). Also the unique
    /// index over open runs: a workflow id has an open run only if its latest run is open.
    pub(crate) latest_runs: BTreeMap<String, i64>,
    pub(crate) activities: BTreeMap<ActivityKey, ActivityRecord>,
    pub(crate) timers: BTreeMap<ActivityKey, TimerRecord>,
    // Indexes, as a database store's: queued tasks by queue and ready time, leases and
    // timers and activities by the deadline the tick acts on.
    pub(crate) workflow_queues: BTreeMap<String, BTreeSet<(i64, i64)>>,
    pub(crate) workflow_leases: BTreeSet<(i64, i64)>,
    pub(crate) activity_queues: BTreeMap<String, BTreeSet<(i64, ActivityKey)>>,
    pub(crate) activity_deadlines: BTreeSet<(i64, ActivityKey)>,
    pub(crate) timer_deadlines: BTreeSet<(i64, ActivityKey)>,
    pub(crate) running_attempts: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(RulesConfig::default())
    }
}

fn conflict(what: String) -> CoreError {
    CoreError::Conflict(what)
}

impl MemoryStore {
    pub fn new(config: RulesConfig) -> Self {
        MemoryStore {
            config,
            tokens: CountingTokens::default(),
            runs: Vec::new(),
            latest_runs: BTreeMap::new(),
            activities: BTreeMap::new(),
            timers: BTreeMap::new(),
            workflow_queues: BTreeMap::new(),
            workflow_leases: BTreeSet::new(),
            activity_queues: BTreeMap::new(),
            activity_deadlines: BTreeSet::new(),
            timer_deadlines: BTreeSet::new(),
            running_attempts: 0,
        }
    }

    pub(crate) fn run(&self, run_key: i64) -> CoreResult<&MemoryRun> {
        usize::try_from(run_key)
            .ok()
            .and_then(|index| self.runs.get(index))
            .ok_or_else(|| CoreError::WorkflowNotFound(format!("run key {run_key}")))
    }

    /// A loaded copy of a run's record (what a database store reads).
    pub(crate) fn load_run(&self, run_key: i64) -> CoreResult<RunRecord> {
        Ok(self.run(run_key)?.record.clone())
    }

    pub(crate) fn load_activity(&self, key: ActivityKey) -> CoreResult<ActivityRecord> {
        self.activities
            .get(&key)
            .cloned()
            .ok_or_else(|| CoreError::StaleTask(format!("activity {key:?} is over")))
    }

    /// Persists `plan` for run `run_key` (None: a new run; its key is returned). All or
    /// nothing: every compare-and-set is checked before anything is written.
    pub(crate) fn persist(&mut self, run_key: Option<i64>, plan: Plan) -> CoreResult<i64> {
        self.check(run_key, &plan)?;
        let Plan {
            run: change,
            events,
            activities,
            timers,
            drop_pending_work,
        } = plan;
        let key = self.persist_run(run_key, change)?;
        let run = &mut self.runs[key as usize];
        for event in events {
            if event.event_id != run.events.len() as u64 + 1 {
                return Err(conflict(format!(
                    "event {} of run {key} is not the next one",
                    event.event_id
                )));
            }
            run.events.push(event);
        }
        for write in activities {
            self.persist_activity(key, write);
        }
        for write in timers {
            match write {
                TimerWrite::Insert(timer) => {
                    let timer_key = (key, timer.started_event_id);
                    self.timer_deadlines.insert((timer.fire_at_ms, timer_key));
                    self.timers.insert(timer_key, timer);
                }
                TimerWrite::Cancel { started_event_id } | TimerWrite::Fire { started_event_id } => {
                    self.drop_timer((key, started_event_id));
                }
            }
        }
        if drop_pending_work {
            let open: Vec<ActivityKey> = self
                .activities
                .range((key, 0)..=(key, u64::MAX))
                .map(|(activity_key, _)| *activity_key)
                .collect();
            for activity_key in open {
                if let Some(old) = self.activities.remove(&activity_key) {
                    self.unindex_activity(activity_key, &old);
                }
            }
            let timers: Vec<ActivityKey> = self
                .timers
                .range((key, 0)..=(key, u64::MAX))
                .map(|(timer_key, _)| *timer_key)
                .collect();
            for timer_key in timers {
                self.drop_timer(timer_key);
            }
        }
        Ok(key)
    }

    fn check(&self, run_key: Option<i64>, plan: &Plan) -> CoreResult<()> {
        if let (None, Some(change)) = (run_key, &plan.run) {
            let workflow_id = &change.record.identity.workflow_id;
            let open = self
                .latest_runs
                .get(workflow_id)
                .is_some_and(|&latest| self.runs[latest as usize].record.is_running());
            if open {
                return Err(CoreError::WorkflowAlreadyStarted(workflow_id.clone()));
            }
        }
        let Some(key) = run_key else {
            return Ok(());
        };
        if let Some(expected) = plan.run.as_ref().and_then(|change| change.expected_version) {
            let version = self.run(key)?.record.version;
            if version != expected {
                return Err(conflict(format!(
                    "run {key} is at version {version}, not {expected}"
                )));
            }
        }
        for write in &plan.activities {
            let (seid, expected) = match write {
                ActivityWrite::Insert(record) => (record.scheduled_event_id, None),
                ActivityWrite::Update {
                    expected_version,
                    record,
                } => (record.scheduled_event_id, Some(*expected_version)),
                ActivityWrite::Delete {
                    scheduled_event_id,
                    expected_version,
                } => (*scheduled_event_id, Some(*expected_version)),
            };
            let current = self
                .activities
                .get(&(key, seid))
                .map(|record| record.version);
            if current != expected {
                return Err(conflict(format!(
                    "activity {seid} of run {key} is at version {current:?}, not {expected:?}"
                )));
            }
        }
        Ok(())
    }

    fn persist_run(&mut self, run_key: Option<i64>, change: Option<RunChange>) -> CoreResult<i64> {
        let Some(RunChange {
            expected_version,
            mut record,
        }) = change
        else {
            return run_key.ok_or_else(|| conflict("a new run's plan records it".into()));
        };
        match (run_key, expected_version) {
            (None, None) => {
                let key = self.runs.len() as i64;
                record.key = key;
                self.latest_runs
                    .insert(record.identity.workflow_id.clone(), key);
                self.reindex_run(None, &record);
                self.runs.push(MemoryRun {
                    record,
                    events: Vec::new(),
                });
                Ok(key)
            }
            (Some(key), Some(_)) => {
                record.key = key;
                let old = std::mem::replace(&mut self.runs[key as usize].record, record);
                let new = &self.runs[key as usize].record;
                Self::reindex_run_in(
                    &mut self.workflow_queues,
                    &mut self.workflow_leases,
                    Some(&old),
                    new,
                );
                Ok(key)
            }
            _ => Err(conflict(
                "a plan inserts a new run or updates a loaded one".into(),
            )),
        }
    }

    /// Writes one activity (its version was checked before anything was written).
    fn persist_activity(&mut self, run_key: i64, write: ActivityWrite) {
        match write {
            ActivityWrite::Insert(record) => {
                let key = (run_key, record.scheduled_event_id);
                self.index_activity(key, &record);
                self.activities.insert(key, record);
            }
            ActivityWrite::Update { record, .. } => {
                // In place: a lease or a retry moves the activity's index entries, not its row.
                let key = (run_key, record.scheduled_event_id);
                let Some(slot) = self.activities.get_mut(&key) else {
                    return;
                };
                let old = ActivityIndexEntry::of(slot);
                *slot = record;
                let new = ActivityIndexEntry::of(slot);
                let queue = slot.scheduled.options.task_queue.as_str();
                let indexes = ActivityIndexes {
                    queues: &mut self.activity_queues,
                    deadlines: &mut self.activity_deadlines,
                    running: &mut self.running_attempts,
                };
                indexes.update(key, queue, Some(old), Some(new));
            }
            ActivityWrite::Delete {
                scheduled_event_id, ..
            } => {
                let key = (run_key, scheduled_event_id);
                if let Some(old) = self.activities.remove(&key) {
                    self.unindex_activity(key, &old);
                }
            }
        }
    }

    fn drop_timer(&mut self, key: ActivityKey) {
        if let Some(timer) = self.timers.remove(&key) {
            self.timer_deadlines.remove(&(timer.fire_at_ms, key));
        }
    }

    fn reindex_run(&mut self, old: Option<&RunRecord>, new: &RunRecord) {
        Self::reindex_run_in(
            &mut self.workflow_queues,
            &mut self.workflow_leases,
            old,
            new,
        );
    }

    /// Moves a run's index entries from its `old` record to its `new` one, touching only
    /// what changed (the maps are this store's indexes: a database updates its own).
    fn reindex_run_in(
        workflow_queues: &mut BTreeMap<String, BTreeSet<(i64, i64)>>,
        workflow_leases: &mut BTreeSet<(i64, i64)>,
        old: Option<&RunRecord>,
        new: &RunRecord,
    ) {
        let key = new.key;
        let queue = &new.identity.task_queue;
        let (old_ready, old_lease) = old.map_or((None, None), |old| {
            (old.ready_at_ms(), old.lease_deadline_ms())
        });
        if old_ready != new.ready_at_ms() {
            if let Some(ready) = old_ready {
                if let Some(queued) = workflow_queues.get_mut(queue) {
                    queued.remove(&(ready, key));
                }
            }
            if let Some(ready) = new.ready_at_ms() {
                match workflow_queues.get_mut(queue) {
                    Some(queued) => {
                        queued.insert((ready, key));
                    }
                    None => {
                        workflow_queues.insert(queue.clone(), BTreeSet::from([(ready, key)]));
                    }
                }
            }
        }
        if old_lease != new.lease_deadline_ms() {
            if let Some(deadline) = old_lease {
                workflow_leases.remove(&(deadline, key));
            }
            if let Some(deadline) = new.lease_deadline_ms() {
                workflow_leases.insert((deadline, key));
            }
        }
    }

    fn index_activity(&mut self, key: ActivityKey, record: &ActivityRecord) {
        self.activity_indexes().update(
            key,
            &record.scheduled.options.task_queue,
            None,
            Some(ActivityIndexEntry::of(record)),
        );
    }

    fn unindex_activity(&mut self, key: ActivityKey, record: &ActivityRecord) {
        self.activity_indexes().update(
            key,
            &record.scheduled.options.task_queue,
            Some(ActivityIndexEntry::of(record)),
            None,
        );
    }

    fn activity_indexes(&mut self) -> ActivityIndexes<'_> {
        ActivityIndexes {
            queues: &mut self.activity_queues,
            deadlines: &mut self.activity_deadlines,
            running: &mut self.running_attempts,
        }
    }
}

/// Where an activity sits in the memory store's indexes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ActivityIndexEntry {
    /// Queued from then (None: running).
    ready_at_ms: Option<i64>,
    next_deadline_ms: Option<i64>,
}

impl ActivityIndexEntry {
    fn of(record: &ActivityRecord) -> Self {
        ActivityIndexEntry {
            ready_at_ms: record.ready_at_ms(),
            next_deadline_ms: record.next_deadline_ms(),
        }
    }
}

struct ActivityIndexes<'a> {
    queues: &'a mut BTreeMap<String, BTreeSet<(i64, ActivityKey)>>,
    deadlines: &'a mut BTreeSet<(i64, ActivityKey)>,
    running: &'a mut usize,
}

impl ActivityIndexes<'_> {
    /// Moves an activity's entries from `old` (None: it is new) to `new` (None: it is gone).
    fn update(
        self,
        key: ActivityKey,
        queue: &str,
        old: Option<ActivityIndexEntry>,
        new: Option<ActivityIndexEntry>,
    ) {
        let ready = |entry: Option<ActivityIndexEntry>| entry.and_then(|entry| entry.ready_at_ms);
        let deadline =
            |entry: Option<ActivityIndexEntry>| entry.and_then(|entry| entry.next_deadline_ms);
        let running = |entry: Option<ActivityIndexEntry>| {
            entry.is_some_and(|entry| entry.ready_at_ms.is_none())
        };
        if ready(old) != ready(new) {
            if let Some(at) = ready(old) {
                if let Some(queued) = self.queues.get_mut(queue) {
                    queued.remove(&(at, key));
                }
            }
            if let Some(at) = ready(new) {
                match self.queues.get_mut(queue) {
                    Some(queued) => {
                        queued.insert((at, key));
                    }
                    None => {
                        self.queues
                            .insert(queue.to_string(), BTreeSet::from([(at, key)]));
                    }
                }
            }
        }
        if deadline(old) != deadline(new) {
            if let Some(at) = deadline(old) {
                self.deadlines.remove(&(at, key));
            }
            if let Some(at) = deadline(new) {
                self.deadlines.insert((at, key));
            }
        }
        match (running(old), running(new)) {
            (false, true) => *self.running += 1,
            (true, false) => *self.running -= 1,
            _ => {}
        }
    }
}
