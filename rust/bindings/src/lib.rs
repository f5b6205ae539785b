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
mod run_ids;
mod sqlite_operations;
mod sqlite_store;
mod storage_rows;
mod workflow_run;

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    history::register(module)?;
    storage_rows::register(module)?;
    sqlite_store::register(module)?;
    rules::register(module)?;
    module.add_function(wrap_pyfunction!(run_ids::new_run_id, module)?)?;
    module.add_class::<workflow_run::PyWorkflowRun>()?;
    module.add_class::<memory_store::PyMemoryStore>()?;
    module.add(
        "HISTORY_FORMAT_VERSION",
        mainspring_core::history::FORMAT_VERSION,
    )?;
    module.add("ENGINE_FLAGS", mainspring_core::replay::ENGINE_FLAGS)?;
    module.add(
        "WORKFLOW_STATUSES",
        pyo3::types::PyTuple::new(
            module.py(),
            mainspring_core::rules::RunStatus::ALL.map(mainspring_core::rules::RunStatus::name),
        )?,
    )?;
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
