"""Every exception Mainspring raises, under one base class, :class:`MainspringError`.

The native core raises the classes defined here (it looks them up by name), so a corrupt history
read by Rust and one read by Python are the same exception type.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

__all__ = [
    "ActivityError",
    "ApplicationError",
    "CommitUnknownError",
    "CorruptHistoryError",
    "FailureError",
    "InternalError",
    "InvalidCommandError",
    "InvalidHistoryError",
    "InvalidStorageUrlError",
    "MainspringError",
    "NonDeterminismError",
    "PayloadDecodeError",
    "PayloadError",
    "PayloadTooLargeError",
    "QueryFailedError",
    "StaleTaskError",
    "StorageConflictError",
    "StorageError",
    "UnknownActivityTypeError",
    "UnknownWorkflowTypeError",
    "UnsupportedHistoryError",
    "UnsupportedListFilterError",
    "WaitTimeoutError",
    "WorkflowAlreadyStartedError",
    "WorkflowCanceledError",
    "WorkflowEscapeError",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowTaskFailedError",
    "WorkflowTerminatedError",
]


class MainspringError(Exception):
    """Base of every Mainspring error."""


class InternalError(MainspringError):
    """A bug inside Mainspring (a Rust panic in the native core). Nothing was committed."""


class CorruptHistoryError(MainspringError):
    """Bytes or JSON that do not decode to a history, or a format version this build can't read."""


class UnsupportedHistoryError(MainspringError):
    """A history written by a newer Mainspring: a format version, an event kind or engine flags
    this build does not know. Upgrade the worker (or the replayer) to read it."""


class InvalidHistoryError(MainspringError):
    """A history that decodes but breaks an invariant (dense ids, references, terminal event)."""


class NonDeterminismError(MainspringError):
    """Replayed workflow code issued a command that does not match its recorded history.

    Attributes:
        event_id: The recorded event where replay diverged.
        recorded: The command the history recorded there.
        issued: The command the workflow code issued instead.
    """

    def __init__(
        self,
        message: str,
        event_id: int | None = None,
        recorded: str | None = None,
        issued: str | None = None,
    ) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.recorded = recorded
        self.issued = issued


class InvalidCommandError(MainspringError):
    """Workflow code asked for something that cannot apply (e.g. cancelling an unknown timer)."""


class WorkflowNotFoundError(MainspringError):
    """No workflow with that id exists in this storage."""


class WorkflowAlreadyStartedError(MainspringError):
    """A run with that workflow id is still running."""


class WorkflowNotRunningError(MainspringError):
    """The workflow has already closed, so it takes no signal, cancel or terminate."""


class StaleTaskError(MainspringError):
    """The task's lease expired or the task is over: this worker may no longer report it."""


class InvalidStorageUrlError(MainspringError, ValueError):
    """A storage URL (``Client(url)``, ``--db``, ``$MAINSPRING_DB``) is not one of the accepted
    forms (the message names them), or the driver its store needs is not installed."""


class StorageError(MainspringError):
    """The storage backend failed or is unreachable.

    ``committed`` says what became of the failed call's writes: ``False``, nothing was
    committed (the default: the call may be made again); ``None``, unknown — the connection
    dropped after the commit was sent (:class:`CommitUnknownError`). A worker's own writes are
    fenced by their leases, so it retries them safely either way; a client's call after an
    unknown commit should re-read first (``describe``, ``history``): a signal sent again is
    recorded again, and a start made again after its run closed starts another run."""

    committed: bool | None = False


class CommitUnknownError(StorageError):
    """The connection to the database dropped after a commit was sent: the call's writes may or
    may not have been committed, and reading them back could not tell. Re-read to find out
    before making the call again (see :class:`StorageError`)."""

    committed = None
    #: The database's process that served the lost connection, when the store knows it
    #: (PostgreSQL's backend pid): ended before the write is read back, so what it was doing
    #: is final when it is read.
    server_process: int | None = None


class StorageConflictError(StorageError):
    """A fenced write found a record changed since it was read (another process or worker got
    there first): nothing was written. The operation may be decided again on fresh records."""


class PayloadError(MainspringError):
    """Base of payload encoding problems."""


class PayloadDecodeError(PayloadError):
    """A payload does not decode to the type its function annotation asks for."""


class PayloadTooLargeError(PayloadError):
    """A payload is larger than the configured limit."""


class WorkflowEscapeError(MainspringError):
    """Workflow code awaited something the deterministic loop does not own.

    Examples are ``asyncio.sleep``, a socket, or another event loop's future. The workflow task
    fails and is retried; nothing is recorded in history. Use ``ctx.sleep`` and activities.
    """


class WorkflowTaskFailedError(MainspringError):
    """Workflow code raised an exception that fails the workflow task, not the run (it is not
    a :class:`FailureError` nor a listed type): the worker records nothing, and the task is
    retried with backoff until the code is fixed and redeployed. ``__cause__`` is that
    exception; ``describe()`` shows it as ``last_task_failure``. A ``Replayer`` raises it
    when a replayed task does so."""


class UnsupportedListFilterError(MainspringError, ValueError):
    """A list filter this build cannot apply: ``Client.list_workflows(query=...)`` takes no
    query string yet (the list-filter language comes in a later release). Filter with its
    ``status`` and ``workflow_type`` arguments meanwhile. Also a :class:`ValueError`."""


class UnknownWorkflowTypeError(MainspringError):
    """No registered workflow has that name."""


class UnknownActivityTypeError(MainspringError):
    """No registered activity has that name."""


class QueryFailedError(MainspringError):
    """The query handler raised, or no handler is registered for the query."""


class FailureError(MainspringError):
    """Base of errors that travel through history as a recorded failure.

    Raised out of workflow code (unhandled), a ``FailureError`` fails the run; any other
    exception fails only the workflow task, which is retried until the code is fixed (the
    types a workflow or worker lists in ``failure_exception_types`` fail the run too).
    """


class ApplicationError(FailureError):
    """An error raised on purpose by user code, carried across activities and workflows.

    Args:
        message: What went wrong.
        details: Extra JSON-encodable data for the handler on the other side.
        type: A name retry policies can match in ``non_retryable_error_types``; defaults to the
            class name.
        non_retryable: If true, an activity that raises it is never retried.
        next_retry_delay: Raised by an activity, the delay before the next attempt, in place
            of the retry policy's backoff for this retry (the policy's maximum attempts and
            the schedule-to-close timeout still apply), as in temporalio.
    """

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        type: str | None = None,
        non_retryable: bool = False,
        next_retry_delay: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.type = type or self.__class__.__name__
        self.non_retryable = non_retryable
        self.next_retry_delay = next_retry_delay
        # Set on errors rebuilt from a recorded failure: the stack where it was first raised.
        self.remote_stack_trace = ""


class ActivityError(FailureError):
    """An activity failed, timed out or was cancelled; the cause is in ``__cause__``.

    Attributes:
        activity_type: The activity's registered name.
        attempt: How many attempts ran.
        timeout_type: ``"start_to_close"`` etc. when the activity timed out, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        activity_type: str,
        attempt: int,
        timeout_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.activity_type = activity_type
        self.attempt = attempt
        self.timeout_type = timeout_type


class WaitTimeoutError(FailureError, TimeoutError):
    """``ctx.wait_signal`` or ``ctx.wait_condition`` reached its timeout first.

    Both a :class:`FailureError` (left unhandled, it fails the run rather than retrying the
    task forever) and a builtin :class:`TimeoutError` (``except TimeoutError`` catches it).
    """


class WorkflowFailedError(FailureError):
    """The workflow run failed; its cause chain is in ``__cause__``."""


class WorkflowCanceledError(FailureError):
    """The workflow run was cancelled."""


class WorkflowTerminatedError(FailureError):
    """The workflow run was terminated from outside."""
