//! The golden histories in `tests/histories/` (recorded from real runs by the Python SDK)
//! replay through the core with their recorded commands, and their JSON form is stable.

mod common;

use std::path::PathBuf;

use mainspring_core::history::{
    decode_history, encode_history, history_from_json, history_to_json,
};

fn golden_files() -> Vec<PathBuf> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/histories");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn golden_histories_replay_and_round_trip() {
    let files = golden_files();
    assert!(
        files.len() >= 7,
        "expected the golden histories, found {}",
        files.len()
    );
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let events =
            history_from_json(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(history_to_json(&events) + "\n", text, "{}", path.display());
        assert_eq!(decode_history(&encode_history(&events)).unwrap(), events);
        let run = common::replay_recorded(events)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(run.is_closed(), "{} ends closed", path.display());
    }
}
