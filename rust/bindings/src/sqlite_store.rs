//! `SqliteStore`: the connection behind `SqliteStorage`. Every storage operation is native
//! (`SqliteOperation`): `submit` hands a group of them to the store's own thread, whose results
//! `collect` hands back when `ready_fd` is readable; `run_group` runs one inline. `execute`
//! runs one SQL statement between groups, for diagnostics and tests. One SQLite library per
//! process: Python's `sqlite3` module never opens the same file here.

use mainspring_core::rules::RulesConfig;
use mainspring_sqlite::rusqlite::types::{Value, ValueRef};
use mainspring_sqlite::rusqlite::{Connection, Statement};
use mainspring_sqlite::{open, run_group, Executor, Request, Store, StoreError, StoreResult};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::errors::raise;
use crate::sqlite_operations::{output_to_py, PySqliteOperation};

create_exception!(
    _core,
    SqliteError,
    PyException,
    "SQLite refused a statement (the message says why)."
);

/// The exception of `mainspring.errors` a native store error becomes.
pub fn store_error(py: Python<'_>, error: StoreError) -> PyErr {
    let message = error.to_string();
    let class_name = match error {
        StoreError::Core(core) => return crate::errors::to_py_error(py, core),
        StoreError::Sqlite(_)
        | StoreError::NotCommitted(_)
        | StoreError::Closed
        | StoreError::Forked => "StorageError",
        StoreError::Panic(_) => "InternalError",
    };
    let message = if class_name == "InternalError" {
        format!("Mainspring's SQLite store panicked (a bug; please report it): {message}")
    } else {
        message
    };
    match PyTuple::new(py, [message]) {
        Ok(args) => raise(py, class_name, args),
        Err(error) => error,
    }
}

fn sqlite_error(error: impl std::fmt::Display) -> PyErr {
    SqliteError::new_err(error.to_string())
}

fn value_from_py(object: &Bound<'_, PyAny>) -> PyResult<Value> {
    if object.is_none() {
        Ok(Value::Null)
    } else if let Ok(bytes) = object.cast::<PyBytes>() {
        Ok(Value::Blob(bytes.as_bytes().to_vec()))
    } else if let Ok(text) = object.cast::<PyString>() {
        Ok(Value::Text(text.to_str()?.to_owned()))
    } else if object.is_instance_of::<PyFloat>() {
        Ok(Value::Real(object.extract()?))
    } else if let Ok(integer) = object.extract::<i64>() {
        Ok(Value::Integer(integer))
    } else {
        Err(PyTypeError::new_err(format!(
            "cannot store a {} in SQLite",
            object.get_type().name()?
        )))
    }
}

fn value_to_py<'py>(py: Python<'py>, value: ValueRef<'_>) -> PyResult<Bound<'py, PyAny>> {
    match value {
        ValueRef::Null => Ok(py.None().into_bound(py)),
        ValueRef::Integer(integer) => integer.into_bound_py_any(py),
        ValueRef::Real(real) => real.into_bound_py_any(py),
        ValueRef::Text(text) => String::from_utf8_lossy(text).into_bound_py_any(py),
        ValueRef::Blob(blob) => Ok(PyBytes::new(py, blob).into_any()),
    }
}

/// Binds positional (a sequence) or named (a dict, keys without the colon) parameters.
fn bind(statement: &mut Statement<'_>, parameters: &Bound<'_, PyAny>) -> PyResult<()> {
    let count = statement.parameter_count();
    if let Ok(named) = parameters.cast::<PyDict>() {
        for index in 1..=count {
            let name = statement
                .parameter_name(index)
                .ok_or_else(|| sqlite_error("a statement mixes named and positional parameters"))?
                .to_string();
            let value = named
                .get_item(&name[1..])?
                .ok_or_else(|| sqlite_error(format!("no value for parameter {name}")))?;
            statement
                .raw_bind_parameter(index, value_from_py(&value)?)
                .map_err(sqlite_error)?;
        }
        return Ok(());
    }
    let given = parameters.len()?;
    if given != count {
        return Err(sqlite_error(format!(
            "the statement takes {count} parameters, {given} were given"
        )));
    }
    for (position, value) in parameters.try_iter()?.enumerate() {
        statement
            .raw_bind_parameter(position + 1, value_from_py(&value?)?)
            .map_err(sqlite_error)?;
    }
    Ok(())
}

fn run_statement<'py>(
    py: Python<'py>,
    connection: &Connection,
    sql: &str,
    parameters: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let mut statement = connection.prepare_cached(sql).map_err(sqlite_error)?;
    bind(&mut statement, parameters)?;
    let columns = statement.column_count();
    let rows = PyList::empty(py);
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next().map_err(sqlite_error)? {
        let mut values = Vec::with_capacity(columns);
        for column in 0..columns {
            values.push(value_to_py(py, row.get_ref(column).map_err(sqlite_error)?)?);
        }
        rows.append(PyTuple::new(py, values)?)?;
    }
    Ok(rows)
}

#[pyclass(name = "SqliteStore", module = "mainspring._core", frozen)]
pub struct PySqliteStore {
    executor: Executor,
}

impl PySqliteStore {
    fn with_store<T>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&mut Store) -> PyResult<T>,
    ) -> PyResult<T> {
        let mut outcome = None;
        let opened = self.executor.with_store(|store| {
            outcome = Some(work(store));
            Ok(())
        });
        match (opened, outcome) {
            (Ok(()), Some(result)) => result,
            (Err(error), _) => Err(store_error(py, error)),
            (Ok(()), None) => unreachable!("the work ran"),
        }
    }
}

#[pymethods]
impl PySqliteStore {
    /// Opens (creating) the file in WAL mode; `synchronous` is "FULL" or "NORMAL". The
    /// retry settings are the rules' (a failed workflow task's backoff), and so is
    /// `tick_batch` (most deadlines one poll applies).
    #[new]
    #[pyo3(signature = (path, busy_timeout_ms, synchronous, workflow_task_retry_initial_ms = 1_000, workflow_task_retry_maximum_ms = 60_000, tick_batch = 1_000, identity = None))]
    #[allow(clippy::too_many_arguments)] // the Python constructor's keywords
    fn new(
        py: Python<'_>,
        path: String,
        busy_timeout_ms: u64,
        synchronous: String,
        workflow_task_retry_initial_ms: u64,
        workflow_task_retry_maximum_ms: u64,
        tick_batch: usize,
        identity: Option<String>,
    ) -> PyResult<Self> {
        // Who holds the leases this store takes, for `describe` (the caller names it).
        let identity = identity.unwrap_or_default();
        let config = RulesConfig {
            workflow_task_retry_initial_ms,
            workflow_task_retry_maximum_ms,
            tick_batch,
        };
        let store = py
            .detach(|| open(&path, busy_timeout_ms, &synchronous, config, &identity))
            .map_err(|error| {
                sqlite_error(error.to_string().trim_start_matches("SQLite failed: "))
            })?;
        let executor = Executor::new(store).map_err(sqlite_error)?;
        Ok(PySqliteStore { executor })
    }

    /// Runs one statement between groups (diagnostics, tests): `(rows, last inserted rowid,
    /// rows changed)`.
    #[pyo3(signature = (sql, parameters = None))]
    fn execute<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        parameters: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, i64, u64)> {
        let parameters = parameters.unwrap_or_else(|| PyTuple::empty(py).into_any());
        self.with_store(py, |store| {
            let rows = run_statement(py, &store.connection, sql, &parameters)?;
            let connection = &store.connection;
            Ok((rows, connection.last_insert_rowid(), connection.changes()))
        })
    }

    /// Runs a group of operations in one transaction on this thread (between groups):
    /// `[(True, result) | (False, exception), ...]`.
    fn run_group<'py>(
        &self,
        py: Python<'py>,
        operations: Vec<Bound<'py, PySqliteOperation>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let requests = requests_of(&operations);
        let results = self
            .executor
            .with_store(|store| Ok(run_group(store, &requests)))
            .map_err(|error| store_error(py, error))?;
        outcomes_to_py(py, results)
    }

    /// Hands a group of operations to the store's thread, which runs them in one
    /// transaction; `collect` returns the results under `ticket`.
    fn submit(
        &self,
        py: Python<'_>,
        ticket: u64,
        operations: Vec<Bound<'_, PySqliteOperation>>,
    ) -> PyResult<()> {
        self.executor
            .submit(ticket, requests_of(&operations))
            .map_err(|error| store_error(py, error))
    }

    /// The groups finished since the last call: `[(ticket, [(True, result) | (False,
    /// exception), ...]), ...]`.
    fn collect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let finished = PyList::empty(py);
        for (ticket, results) in self.executor.collect() {
            finished.append((ticket, outcomes_to_py(py, results)?))?;
        }
        Ok(finished)
    }

    /// A socket that becomes readable when a submitted group finished.
    fn ready_fd(&self) -> i64 {
        self.executor.ready_fd()
    }

    /// Waits for the group in flight, stops the thread and closes the file.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.executor.close());
    }
}

fn requests_of(operations: &[Bound<'_, PySqliteOperation>]) -> Vec<Request> {
    operations
        .iter()
        .map(|operation| operation.get().request.clone())
        .collect()
}

fn outcomes_to_py<'py>(
    py: Python<'py>,
    results: Vec<StoreResult<mainspring_sqlite::Output>>,
) -> PyResult<Bound<'py, PyList>> {
    let outcomes = PyList::empty(py);
    for result in results {
        match result {
            Ok(output) => outcomes.append((true, output_to_py(py, output)?))?,
            Err(error) => outcomes.append((false, store_error(py, error).into_value(py)))?,
        }
    }
    Ok(outcomes)
}

/// The version of the SQLite built into Mainspring.
#[pyfunction]
fn sqlite_version() -> &'static str {
    mainspring_sqlite::rusqlite::version()
}

/// The schema's SQL migrations, in order, up to the first that is code (for tests that write
/// an old file).
#[pyfunction]
fn sqlite_migrations() -> Vec<&'static str> {
    mainspring_sqlite::MIGRATIONS
        .iter()
        .map_while(|migration| match migration {
            mainspring_sqlite::Migration::Sql(sql) => Some(*sql),
            mainspring_sqlite::Migration::Code(_) => None,
        })
        .collect()
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PySqliteStore>()?;
    module.add_class::<PySqliteOperation>()?;
    module.add_class::<crate::sqlite_operations::PySlotPool>()?;
    module.add_function(wrap_pyfunction!(sqlite_migrations, module)?)?;
    module.add("SQLITE_SCHEMA_VERSION", mainspring_sqlite::SCHEMA_VERSION)?;
    module.add("SqliteError", module.py().get_type::<SqliteError>())?;
    module.add_function(wrap_pyfunction!(sqlite_version, module)?)?;
    Ok(())
}
