//! `mainspring._core`: the thin PyO3 layer over `mainspring-core`. This file only registers;
//! each exposed core module has its own file.

use pyo3::prelude::*;

mod convert;
mod errors;
mod history;
mod memory_store;
mod rule_records;
mod rule_requests;
mod rules;
mod sqlite_operations;
mod sqlite_store;
mod storage_rows;
mod workflow_run;

/// A new run id: a UUIDv7 (RFC 9562), whose leading 48 bits are the Unix time in
/// milliseconds and the rest random. Time-ordered ids keep a store's unique run-id index
/// growing at its end: with random (v4) ids every start wrote a random leaf of an index that,
/// in a file of a million runs, no page cache holds (1,000 new workflows ran at 0.69-0.85 of
/// an empty file's speed; with v7, the same).
#[pyfunction]
fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    history::register(module)?;
    storage_rows::register(module)?;
    sqlite_store::register(module)?;
    rules::register(module)?;
    module.add_function(wrap_pyfunction!(new_run_id, module)?)?;
    module.add_class::<workflow_run::PyWorkflowRun>()?;
    module.add_class::<memory_store::PyMemoryStore>()?;
    module.add(
        "HISTORY_FORMAT_VERSION",
        mainspring_core::history::FORMAT_VERSION,
    )?;
    module.add("ENGINE_FLAGS", mainspring_core::replay::ENGINE_FLAGS)?;
    module.add(
        "FLAG_TASK_FAILURES",
        mainspring_core::history::flags::TASK_FAILURES,
    )?;
    module.add(
        "FLAG_STAGED_JOBS",
        mainspring_core::history::flags::STAGED_JOBS,
    )?;
    Ok(())
}
