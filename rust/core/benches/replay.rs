//! Core-only replay throughput: histories of 1,000 and 10,000 sequential activities replayed
//! with their recorded commands (no Python). `cargo bench -p mainspring-core --bench replay`.
//! Mirrors `benches/bench_replay.py::test_replay_core_only`, so the FFI cost reads off the
//! difference.

// A benchmark measures wall time; the core itself never reads the clock.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use mainspring_core::history::{decode_history, encode_history};
use mainspring_core::replay::WorkflowRun;

fn main() {
    for activities in [1_000u32, 10_000] {
        let events = common::sequential_activities(activities);
        let encoded = encode_history(&events);
        let scripts = common::recorded_scripts(&events);
        let mut best = f64::MAX;
        for _ in 0..20 {
            let scripts = scripts.clone();
            let started = Instant::now();
            let decoded = decode_history(&encoded).expect("valid history");
            let mut run = WorkflowRun::new();
            run.add_events(decoded).expect("dense ids");
            for commands in scripts {
                run.next_activation(0, false).expect("activation");
                run.complete(commands).expect("replays");
            }
            assert!(run.is_closed());
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "replay {activities:>6} activities (decode + validate + replay): {:8.3} ms, {:>12.0} activities/s",
            best * 1_000.0,
            f64::from(activities) / best
        );
    }
}
