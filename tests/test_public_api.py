"""The public names are a contract: this pins them."""

import mainspring
import mainspring.errors
import mainspring.storage


def test_top_level_exports() -> None:
    assert sorted(mainspring.__all__) == [
        "ActivityContext",
        "ActivityHandle",
        "ActivityInfo",
        "Client",
        "History",
        "Query",
        "Replayer",
        "RetryPolicy",
        "Signal",
        "Worker",
        "WorkerConfig",
        "WorkerStats",
        "WorkflowContext",
        "WorkflowDescription",
        "WorkflowExecutionStatus",
        "WorkflowHandle",
        "WorkflowInfo",
        "activity",
        "run",
        "workflow",
    ]
    for name in mainspring.__all__:
        assert getattr(mainspring, name) is not None


def test_storage_exports() -> None:
    assert "MemoryStorage" in mainspring.storage.__all__
    assert "Storage" in mainspring.storage.__all__


def test_every_error_is_a_mainspring_error() -> None:
    for name in mainspring.errors.__all__:
        error_class = getattr(mainspring.errors, name)
        assert issubclass(error_class, mainspring.errors.MainspringError), name
