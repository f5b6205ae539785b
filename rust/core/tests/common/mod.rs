//! Helpers shared by the integration tests: building histories and scripted workflows.
#![allow(dead_code)]

use std::collections::BTreeMap;

use mainspring_core::history::{
    ActivityOptions, Event, EventAttributes, Payload, WorkflowStartedAttributes,
};
use mainspring_core::replay::Command;

pub fn payload(text: &str) -> Payload {
    Payload(text.as_bytes().to_vec())
}

pub fn options() -> ActivityOptions {
    ActivityOptions {
        task_queue: "q".into(),
        start_to_close_ms: Some(10_000),
        ..ActivityOptions::default()
    }
}

pub fn started() -> EventAttributes {
    EventAttributes::WorkflowStarted(Box::new(WorkflowStartedAttributes {
        workflow_type: "wf".into(),
        workflow_id: "w-1".into(),
        run_id: "r-1".into(),
        task_queue: "q".into(),
        input: payload("null"),
    }))
}

/// A task boundary as this build records it (with its engine flags).
pub fn boundary(seen_event_id: u64) -> EventAttributes {
    boundary_with_flags(seen_event_id, mainspring_core::history::flags::ENGINE_FLAGS)
}

pub fn boundary_with_flags(seen_event_id: u64, flags: u64) -> EventAttributes {
    EventAttributes::WorkflowTaskCompleted {
        seen_event_id,
        flags,
        dropped_signals: 0,
    }
}

pub fn scheduled(seq: u32, activity_type: &str) -> EventAttributes {
    EventAttributes::ActivityScheduled {
        seq,
        activity_type: activity_type.into(),
        input: payload("null"),
        options: Box::new(options()),
    }
}

pub fn schedule(seq: u32, activity_type: &str) -> Command {
    Command::ScheduleActivity {
        seq,
        activity_type: activity_type.into(),
        input: payload("null"),
        options: Box::new(options()),
    }
}

pub fn completed(scheduled_event_id: u64, result: &str) -> EventAttributes {
    EventAttributes::ActivityCompleted {
        scheduled_event_id,
        result: payload(result),
        attempt: 1,
    }
}

pub fn complete_workflow(result: &str) -> Command {
    Command::CompleteWorkflow {
        result: payload(result),
    }
}

/// Numbers attributes into events with ids from 1 and a clock that ticks 1 ms per event.
pub fn history(attributes: Vec<EventAttributes>) -> Vec<Event> {
    attributes
        .into_iter()
        .enumerate()
        .map(|(index, attributes)| Event {
            event_id: index as u64 + 1,
            timestamp_ms: 1_000 + index as i64,
            attributes,
        })
        .collect()
}

/// A history of `count` sequential activities, the way a live run records it.
pub fn sequential_activities(count: u32) -> Vec<Event> {
    let mut attributes = vec![started(), boundary(1), scheduled(1, "step")];
    for seq in 1..=count {
        let scheduled_id = attributes.len() as u64;
        attributes.push(completed(scheduled_id, "1"));
        let seen = attributes.len() as u64;
        attributes.push(boundary(seen));
        if seq == count {
            attributes.push(EventAttributes::WorkflowCompleted {
                result: payload("null"),
            });
        } else {
            attributes.push(scheduled(seq + 1, "step"));
        }
    }
    history(attributes)
}

/// For every task boundary, the commands the history recorded right after it: what the
/// workflow code must issue again on replay. Lets tests (and the core-only benchmark) replay
/// any history without workflow code. One pass, so it stays linear in history length.
pub fn recorded_scripts(events: &[Event]) -> Vec<Vec<Command>> {
    let mut scheduled_seq = BTreeMap::new();
    let mut timer_seq = BTreeMap::new();
    let mut scripts: Vec<Vec<Command>> = Vec::new();
    let mut collecting = false;
    for event in events {
        match &event.attributes {
            EventAttributes::ActivityScheduled { seq, .. } => {
                scheduled_seq.insert(event.event_id, *seq);
            }
            EventAttributes::TimerStarted { seq, .. } => {
                timer_seq.insert(event.event_id, *seq);
            }
            _ => {}
        }
        if matches!(
            event.attributes,
            EventAttributes::WorkflowTaskCompleted { .. }
        ) {
            scripts.push(Vec::new());
            collecting = true;
            continue;
        }
        if !collecting {
            continue;
        }
        let command = match &event.attributes {
            EventAttributes::ActivityScheduled {
                seq,
                activity_type,
                input,
                options,
            } => Command::ScheduleActivity {
                seq: *seq,
                activity_type: activity_type.clone(),
                input: input.clone(),
                options: options.clone(),
            },
            EventAttributes::ActivityCancelRequested { scheduled_event_id } => {
                Command::RequestCancelActivity {
                    seq: scheduled_seq[scheduled_event_id],
                }
            }
            EventAttributes::TimerStarted { seq, duration_ms } => Command::StartTimer {
                seq: *seq,
                duration_ms: *duration_ms,
            },
            EventAttributes::TimerCanceled { started_event_id } => Command::CancelTimer {
                seq: timer_seq[started_event_id],
            },
            EventAttributes::WorkflowCompleted { result } => Command::CompleteWorkflow {
                result: result.clone(),
            },
            EventAttributes::WorkflowFailed { failure } => Command::FailWorkflow {
                failure: failure.clone(),
            },
            EventAttributes::WorkflowCanceled { details } => Command::CancelWorkflow {
                details: details.clone(),
            },
            _ => {
                collecting = false;
                continue;
            }
        };
        scripts.last_mut().expect("after a boundary").push(command);
    }
    scripts
}

/// Replays a whole history, answering each activation with the commands it recorded.
pub fn replay_recorded(
    events: Vec<Event>,
) -> Result<mainspring_core::replay::WorkflowRun, mainspring_core::CoreError> {
    let mut run = mainspring_core::replay::WorkflowRun::new();
    let scripts = recorded_scripts(&events);
    run.add_events(events)?;
    for commands in scripts {
        let activation = run
            .next_activation(0, false)?
            .expect("one activation per recorded task");
        assert!(activation.replaying);
        run.complete(commands)?;
    }
    Ok(run)
}
