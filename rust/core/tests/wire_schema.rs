//! The checked-in wire code is what prost generates from `proto/…/history.proto` (the schema),
//! and the schema evolves as `docs/history-format.md` says: a field added to an event reads
//! rows written before it, and a reader without the field reads rows written with it.
//!
//! `MAINSPRING_REGENERATE=1 cargo test -p mainspring-core --test wire_schema` rewrites the
//! generated file after a change to the schema.

use std::path::{Path, PathBuf};

use mainspring_core::history::{
    decode_event_row, encode_event_row, Event, EventAttributes, Payload,
};

/// Relative to the `proto` include folder.
const PROTO: &str = "mainspring/history/v1/history.proto";
const GENERATED: &str = "src/history/wire/mainspring.history.v1.rs";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn descriptors() -> prost_types::FileDescriptorSet {
    protox::compile([PROTO], [crate_dir().join("proto")]).expect("the schema compiles")
}

fn generate(out: &Path) {
    prost_build::Config::new()
        .out_dir(out)
        .compile_fds(descriptors())
        .expect("prost generates the wire code");
}

#[test]
fn wire_code_is_generated_from_the_proto() {
    let out = std::env::temp_dir().join(format!("mainspring-wire-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    generate(&out);
    let fresh = std::fs::read_to_string(out.join("mainspring.history.v1.rs")).unwrap();
    let checked_in = crate_dir().join(GENERATED);
    if std::env::var_os("MAINSPRING_REGENERATE").is_some() {
        std::fs::write(&checked_in, &fresh).unwrap();
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    std::fs::remove_dir_all(&out).ok();
    assert!(
        fresh == current,
        "{GENERATED} is not what {PROTO} generates: rerun with MAINSPRING_REGENERATE=1"
    );
}

/// The schema with one field added to `WorkflowSignaled`: `string sender = 3`, as a later
/// release might add it.
fn evolved_pool() -> prost_reflect::DescriptorPool {
    let mut set = descriptors();
    let file = set
        .file
        .iter_mut()
        .find(|file| file.name() == PROTO)
        .unwrap();
    let signaled = file
        .message_type
        .iter_mut()
        .find(|message| message.name() == "WorkflowSignaled")
        .unwrap();
    signaled.field.push(prost_types::FieldDescriptorProto {
        name: Some("sender".into()),
        json_name: Some("sender".into()),
        number: Some(3),
        label: Some(prost_types::field_descriptor_proto::Label::Optional.into()),
        r#type: Some(prost_types::field_descriptor_proto::Type::String.into()),
        ..Default::default()
    });
    prost_reflect::DescriptorPool::from_file_descriptor_set(set).unwrap()
}

fn signal_event() -> Event {
    Event {
        event_id: 2,
        timestamp_ms: 1_893_456_000_000,
        attributes: EventAttributes::WorkflowSignaled {
            signal_name: "approve".into(),
            input: Payload(b"{\"by\":\"ops\"}".to_vec()),
        },
    }
}

#[test]
fn a_field_added_to_an_event_reads_rows_written_before_it_and_after() {
    use prost::Message;
    use prost_reflect::{DynamicMessage, Value};

    let pool = evolved_pool();
    let event_type = pool
        .get_message_by_name("mainspring.history.v1.Event")
        .unwrap();
    // A row this build wrote, read by the release that added `sender`: the new field is at its
    // default, the rest as written.
    let row = encode_event_row(&signal_event());
    let read = DynamicMessage::decode(event_type.clone(), row.as_slice()).unwrap();
    let signaled = read.get_field_by_name("workflow_signaled").unwrap();
    let signaled = signaled.as_message().unwrap();
    assert_eq!(
        signaled.get_field_by_name("sender").unwrap().as_str(),
        Some("")
    );
    assert_eq!(
        signaled.get_field_by_name("signal_name").unwrap().as_str(),
        Some("approve")
    );
    // A row that release wrote, with `sender` set, read by this build: the field it does not
    // know is skipped, the event is the same.
    let mut newer = read.clone();
    let mut evolved = signaled.clone();
    evolved.set_field_by_name("sender", Value::String("ops-console".into()));
    newer.set_field_by_name("workflow_signaled", Value::Message(evolved));
    let newer_row = newer.encode_to_vec();
    assert!(newer_row.len() > row.len());
    assert_eq!(decode_event_row(&newer_row).unwrap(), signal_event());
}
