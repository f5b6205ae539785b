"""The client: starts workflows and talks to running ones."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

from . import _core, _payload
from ._definitions import workflow_definition
from ._failure import exception_from_failure
from .errors import (
    UnsupportedListFilterError,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowTerminatedError,
)
from .history import History
from .messages import Query, Signal, message_name, query_result_type
from .storage.base import (
    WORKFLOW_STATUSES,
    Storage,
    WorkflowDescription,
    WorkflowExecutionStatus,
    WorkflowTask,
)

__all__ = ["Client", "WorkflowHandle", "WorkflowRunIterator"]

ResultT = TypeVar("ResultT")
QueryResultT = TypeVar("QueryResultT")

_NO_INPUT: Any = object()


def _seconds(timeout: timedelta | float | None) -> float | None:
    if timeout is None:
        return None
    return timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)


class WorkflowRunIterator:
    """The runs :meth:`Client.list_workflows` finds: an async iterator that reads them from the
    storage a page at a time, each page when iteration reaches it (as temporalio's
    ``WorkflowExecutionAsyncIterator``)."""

    def __init__(
        self,
        storage: Storage,
        *,
        status: str | None,
        workflow_type: str | None,
        page_size: int,
        limit: int | None,
    ) -> None:
        self._storage = storage
        self._status = status
        self._workflow_type = workflow_type
        self._page_size = page_size
        self._remaining = limit
        self._page: list[WorkflowDescription] = []
        self._index = 0
        self._after_run_key: int | None = None
        self._done = False

    def __aiter__(self) -> WorkflowRunIterator:
        return self

    async def __anext__(self) -> WorkflowDescription:
        while self._index >= len(self._page):
            if self._done:
                raise StopAsyncIteration
            await self._fetch_next_page()
        run = self._page[self._index]
        self._index += 1
        return run

    async def _fetch_next_page(self) -> None:
        size = self._page_size
        if self._remaining is not None:
            size = min(size, self._remaining)
        if size <= 0:
            self._page, self._index, self._done = [], 0, True
            return
        page = await self._storage.list_workflows(
            after_run_key=self._after_run_key,
            page_size=size,
            status=self._status,
            workflow_type=self._workflow_type,
        )
        self._page, self._index = page.runs[:size], 0
        if self._remaining is not None:
            self._remaining -= len(self._page)
        self._after_run_key = page.next_after_run_key
        self._done = page.next_after_run_key is None


class WorkflowHandle(Generic[ResultT]):
    """A reference to one workflow (its current run unless ``run_id`` is pinned)."""

    def __init__(
        self, client: Client, workflow_id: str, run_id: str | None, result_type: Any
    ) -> None:
        self.client = client
        self.id = workflow_id
        self.run_id = run_id
        self.result_type = result_type

    async def _run_id(self) -> str:
        if self.run_id is None:
            self.run_id = (await self.client.storage.describe_workflow(self.id)).run_id
        return self.run_id

    async def result(self, timeout: timedelta | float | None = None) -> ResultT:
        """Waits for the run to close and returns its result.

        Raises:
            WorkflowFailedError: the workflow raised; the cause chain is in ``__cause__``.
            WorkflowCanceledError: the workflow was cancelled.
            WorkflowTerminatedError: the workflow was terminated.
            TimeoutError: ``timeout`` passed first.
        """
        storage = self.client.storage
        run_id = await self._run_id()
        closing = await storage.wait_closed(self.id, run_id, _seconds(timeout))
        outcome = _core.run_outcome(closing)
        assert outcome is not None, "a closed run ends with its closing event"
        status, detail = outcome
        if status == "COMPLETED":
            decoded: ResultT = _payload.decode(detail, self.result_type)
            return decoded
        if status == "FAILED":
            raise WorkflowFailedError(f"workflow {self.id} failed") from exception_from_failure(
                detail
            )
        if status == "CANCELED":
            raise WorkflowCanceledError(f"workflow {self.id} was cancelled")
        raise WorkflowTerminatedError(f"workflow {self.id} was terminated: {detail}")

    async def signal(self, signal: Signal) -> None:
        await self.client.signal_workflow(self.id, signal)

    async def query(
        self, query: Query[QueryResultT], *, timeout: timedelta | float = 10.0
    ) -> QueryResultT:
        return await self.client.query_workflow(self.id, query, timeout=timeout)

    async def cancel(self, reason: str = "") -> None:
        """Requests cancellation: the workflow sees ``asyncio.CancelledError`` where it waits."""
        await self.client.storage.request_cancel_workflow(self.id, reason)

    async def terminate(self, reason: str = "") -> None:
        """Ends the run at once; its code gets no say."""
        await self.client.storage.terminate_workflow(self.id, reason)

    async def describe(self) -> WorkflowDescription:
        return await self.client.storage.describe_workflow(self.id)

    async def history(self) -> History:
        run_id = await self._run_id()
        return History(await self.client.storage.read_history(self.id, run_id, 1))


class LocalWorker(Protocol):
    """The workflow side of a worker running in this process, as a client sees it."""

    @property
    def lease_ms(self) -> int: ...
    def takes_eager_start(self) -> bool: ...
    def start_eagerly(self, task: WorkflowTask) -> None: ...
    async def start_and_advance(
        self, workflow_id: str, run_id: str, workflow_type: str, task_queue: str, input: bytes
    ) -> bool: ...


class Client:
    """Starts workflows and talks to them through a :class:`~mainspring.storage.Storage`.

    ``storage`` is a storage object or a storage URL (``memory:``, ``sqlite:///app.db``, a
    plain file path, ``postgresql://user@host/db?schema=mainspring``: see
    :mod:`mainspring.storage.urls`). Without one it opens what ``$MAINSPRING_DB`` names, else
    the embedded default: the SQLite file ``mainspring.db`` in the working directory.
    """

    def __init__(
        self,
        storage: Storage | str | os.PathLike[str] | None = None,
        *,
        maximum_payload_bytes: int = _payload.DEFAULT_MAXIMUM_PAYLOAD_BYTES,
    ) -> None:
        if storage is None or isinstance(storage, (str, os.PathLike)):
            from .storage.urls import open_storage

            storage = open_storage(storage or os.environ.get("MAINSPRING_DB") or "mainspring.db")
        self.storage: Storage = storage
        self.maximum_payload_bytes = maximum_payload_bytes
        # Running workers of this process, by task queue: a start hands them its first
        # workflow task directly (see start_workflow).
        self._local_workers: dict[str, LocalWorker] = {}

    def _attach_worker(self, task_queue: str, worker: LocalWorker) -> None:
        self._local_workers[task_queue] = worker

    def _detach_worker(self, task_queue: str, worker: LocalWorker) -> None:
        if self._local_workers.get(task_queue) is worker:
            del self._local_workers[task_queue]

    async def close(self) -> None:
        """Closes the storage (flushes and stops its database thread, for SQLite)."""
        await self.storage.close()

    async def start_workflow(
        self,
        workflow: Callable[..., Any] | str,
        input: Any = _NO_INPUT,
        *,
        id: str,
        task_queue: str,
    ) -> WorkflowHandle[Any]:
        """Starts a run of ``workflow`` (a ``@workflow`` function or its registered name).

        Raises:
            WorkflowAlreadyStartedError: a run with this id is still running.
            PayloadDecodeError: ``input`` does not match the workflow's input annotation.
        """
        value = None if input is _NO_INPUT else input
        encoded = _payload.encode(value, self.maximum_payload_bytes)
        if isinstance(workflow, str):
            workflow_type, result_type = workflow, Any
        else:
            definition = workflow_definition(workflow)
            workflow_type, result_type = definition.name, definition.output_type
            if definition.takes_input:
                # Refuse a wrong input here, before anything is recorded.
                _payload.decode(encoded, definition.input_type)
        run_id = _core.new_run_id()  # UUIDv7: time-ordered, see _core.new_run_id
        # Eager start (Temporal's request_eager_start, here automatic): when a worker of this
        # process polls the task queue and has room, the first workflow task is leased to it
        # in the start's own commit, so the workflow begins without a poll.
        local = self._local_workers.get(task_queue)
        # Better still, where the storage fuses commits: the worker runs that first task
        # before anything is recorded, and the start commits with its outcome.
        if local is not None and await local.start_and_advance(
            id, run_id, workflow_type, task_queue, encoded
        ):
            return WorkflowHandle(self, id, run_id, result_type)
        eager = local if local is not None and local.takes_eager_start() else None
        task = await self.storage.start_workflow(
            id,
            run_id,
            workflow_type,
            task_queue,
            encoded,
            eager_lease_ms=None if eager is None else eager.lease_ms,
        )
        if task is not None and eager is not None:
            eager.start_eagerly(task)
        return WorkflowHandle(self, id, run_id, result_type)

    async def execute_workflow(
        self,
        workflow: Callable[..., Any] | str,
        input: Any = _NO_INPUT,
        *,
        id: str,
        task_queue: str,
    ) -> Any:
        """Starts a workflow and waits for its result."""
        handle = await self.start_workflow(workflow, input, id=id, task_queue=task_queue)
        return await handle.result()

    def get_workflow_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: Any = Any
    ) -> WorkflowHandle[Any]:
        return WorkflowHandle(self, workflow_id, run_id, result_type)

    async def signal_workflow(self, workflow_id: str, signal: Signal) -> None:
        encoded = _payload.encode(signal, self.maximum_payload_bytes)
        await self.storage.signal_workflow(workflow_id, message_name(type(signal)), encoded)

    async def query_workflow(
        self,
        workflow_id: str,
        query: Query[QueryResultT],
        *,
        timeout: timedelta | float = 10.0,
    ) -> QueryResultT:
        """Asks a worker to answer ``query`` from the workflow's current state.

        Raises:
            QueryFailedError: no handler, the handler raised, or no worker answered in time.
        """
        query_type = type(query)
        encoded = _payload.encode(query, self.maximum_payload_bytes)
        seconds = _seconds(timeout)
        assert seconds is not None
        answer = await self.storage.query_workflow(
            workflow_id, message_name(query_type), encoded, seconds
        )
        decoded: QueryResultT = _payload.decode(answer, query_result_type(query_type))
        return decoded

    def list_workflows(
        self,
        query: str | None = None,
        *,
        status: WorkflowExecutionStatus | str | None = None,
        workflow_type: str | None = None,
        limit: int | None = None,
        page_size: int = 1000,
    ) -> WorkflowRunIterator:
        """The runs of this storage, closed and open, oldest first (the order they started
        in), as temporalio's ``Client.list_workflows``: ``async for run in
        client.list_workflows(status="RUNNING"): ...``.

        The runs are read a page at a time, each page one storage read made when iteration
        reaches it, and a page costs its own runs however many come before it. Each run is
        listed once at most, as it stood when its page was read; runs that start while the
        iteration goes on are listed at its end.

        Args:
            query: A list-filter query string: not supported yet (the list-filter language
                comes in a later release), so anything but None raises.
            status: Only runs of this status: a :class:`WorkflowExecutionStatus`, or its name
                (``"RUNNING"``, ``"COMPLETED"``, ``"FAILED"``, ``"CANCELED"``,
                ``"TERMINATED"``).
            workflow_type: Only runs of this workflow type (its registered name).
            limit: At most this many runs; None for all of them.
            page_size: How many runs one storage read fetches.

        Raises:
            UnsupportedListFilterError: ``query`` is given.
            ValueError: ``status`` is not one of those names, ``page_size`` is below 1 or
                ``limit`` below 0.
        """
        if query is not None:
            raise UnsupportedListFilterError(
                f"list_workflows takes no query string yet ({query!r}): the list-filter "
                "language comes in a later release; filter with status= and workflow_type="
            )
        if status is not None and status not in WORKFLOW_STATUSES:
            raise ValueError(
                f"unknown workflow status {status!r}: one of {', '.join(WORKFLOW_STATUSES)}"
            )
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        return WorkflowRunIterator(
            self.storage,
            status=None if status is None else str(status),
            workflow_type=workflow_type,
            page_size=page_size,
            limit=limit,
        )
