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
    ActivityRecord, ActivityWrite, CountingTokens, Plan, RulesConfig, RunRecord, TimerRecord,
    TimerWrite,
};

pub use store::{ActivityTaskLease, RunSummary, WorkflowTaskLease};

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
    /// The unique index: a workflow id's open run.
    pub(crate) open_runs: BTreeMap<String, i64>,
    /// A workflow id's latest run, open or closed (what `describe` reports).
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
            open_runs: BTreeMap::new(),
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
        let key = self.persist_run(run_key, &plan)?;
        let run = &mut self.runs[key as usize];
        for event in plan.events {
            if event.event_id != run.events.len() as u64 + 1 {
                return Err(conflict(format!(
                    "event {} of run {key} is not the next one",
                    event.event_id
                )));
            }
            run.events.push(event);
        }
        for write in plan.activities {
            self.persist_activity(key, write)?;
        }
        for write in plan.timers {
            match write {
                TimerWrite::Insert(timer) => {
                    let timer_key = (key, timer.started_event_id);
                    self.timer_deadlines.insert((timer.fire_at_ms, timer_key));
                    self.timers.insert(timer_key, timer);
                }
                TimerWrite::Delete { started_event_id } => {
                    self.drop_timer((key, started_event_id));
                }
            }
        }
        if plan.drop_pending_work {
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
            if self.open_runs.contains_key(workflow_id) {
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

    fn persist_run(&mut self, run_key: Option<i64>, plan: &Plan) -> CoreResult<i64> {
        let Some(change) = &plan.run else {
            return run_key.ok_or_else(|| conflict("a new run's plan records it".into()));
        };
        let mut record = change.record.clone();
        match (run_key, change.expected_version) {
            (None, None) => {
                let workflow_id = record.identity.workflow_id.clone();
                if self.open_runs.contains_key(&workflow_id) {
                    return Err(CoreError::WorkflowAlreadyStarted(workflow_id));
                }
                let key = self.runs.len() as i64;
                record.key = key;
                self.latest_runs.insert(workflow_id, key);
                self.index_run(&record);
                self.runs.push(MemoryRun {
                    record,
                    events: Vec::new(),
                });
                Ok(key)
            }
            (Some(key), Some(expected)) => {
                let old = self.load_run(key)?;
                if old.version != expected {
                    return Err(conflict(format!(
                        "run {key} is at version {}, not {expected}",
                        old.version
                    )));
                }
                record.key = key;
                self.unindex_run(&old);
                self.index_run(&record);
                self.runs[key as usize].record = record;
                Ok(key)
            }
            _ => Err(conflict(
                "a plan inserts a new run or updates a loaded one".into(),
            )),
        }
    }

    fn persist_activity(&mut self, run_key: i64, write: ActivityWrite) -> CoreResult<()> {
        let (key, expected, record) = match write {
            ActivityWrite::Insert(record) => {
                ((run_key, record.scheduled_event_id), None, Some(record))
            }
            ActivityWrite::Update {
                expected_version,
                record,
            } => (
                (run_key, record.scheduled_event_id),
                Some(expected_version),
                Some(record),
            ),
            ActivityWrite::Delete {
                scheduled_event_id,
                expected_version,
            } => ((run_key, scheduled_event_id), Some(expected_version), None),
        };
        // Checked before: an insert finds nothing, a write the version it expects.
        debug_assert_eq!(self.activities.get(&key).map(|old| old.version), expected);
        if let Some(old) = self.activities.remove(&key) {
            self.unindex_activity(key, &old);
        }
        if let Some(record) = record {
            self.index_activity(key, &record);
            self.activities.insert(key, record);
        }
        Ok(())
    }

    fn drop_timer(&mut self, key: ActivityKey) {
        if let Some(timer) = self.timers.remove(&key) {
            self.timer_deadlines.remove(&(timer.fire_at_ms, key));
        }
    }

    fn index_run(&mut self, record: &RunRecord) {
        if let Some(ready) = record.ready_at_ms() {
            self.workflow_queues
                .entry(record.identity.task_queue.clone())
                .or_default()
                .insert((ready, record.key));
        }
        if let Some(deadline) = record.lease_deadline_ms() {
            self.workflow_leases.insert((deadline, record.key));
        }
        if record.is_running() {
            self.open_runs
                .insert(record.identity.workflow_id.clone(), record.key);
        }
    }

    fn unindex_run(&mut self, record: &RunRecord) {
        if let Some(ready) = record.ready_at_ms() {
            if let Some(queue) = self.workflow_queues.get_mut(&record.identity.task_queue) {
                queue.remove(&(ready, record.key));
            }
        }
        if let Some(deadline) = record.lease_deadline_ms() {
            self.workflow_leases.remove(&(deadline, record.key));
        }
        if record.is_running() {
            self.open_runs.remove(&record.identity.workflow_id);
        }
    }

    fn index_activity(&mut self, key: ActivityKey, record: &ActivityRecord) {
        if let Some(ready) = record.ready_at_ms() {
            self.activity_queues
                .entry(record.options.task_queue.clone())
                .or_default()
                .insert((ready, key));
        } else {
            self.running_attempts += 1;
        }
        if let Some(deadline) = record.next_deadline_ms() {
            self.activity_deadlines.insert((deadline, key));
        }
    }

    fn unindex_activity(&mut self, key: ActivityKey, record: &ActivityRecord) {
        if let Some(ready) = record.ready_at_ms() {
            if let Some(queue) = self.activity_queues.get_mut(&record.options.task_queue) {
                queue.remove(&(ready, key));
            }
        } else {
            self.running_attempts -= 1;
        }
        if let Some(deadline) = record.next_deadline_ms() {
            self.activity_deadlines.remove(&(deadline, key));
        }
    }
}
