"""The storage contract every backend implements (DESIGN §7).

- A workflow task's outcome (its events, the activity tasks and timers they create, the run's
  new status) commits atomically and only while the worker still holds the task's lease
  (fencing); two workers can never both extend one run.
- Leases expire; an expired task goes to another worker.
- Time-driven work (timers, timeouts, retries) becomes visible to polls once due.

The contract is small (:class:`Storage`); what a storage offers beyond it is declared in its
:class:`StorageCapabilities` and, for fused commits and time skipping, by the protocols
:class:`FusedCommits` and :class:`TimeSkipping`. Every rule behind these calls is the native
core's (``mainspring_core::rules``): a storage loads, persists and fences.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, TypeAlias, runtime_checkable

from .. import _core
from .._protocol import FailureTuple, SummaryTuple


# Task records are made once per task on the hot path: slotted, not frozen (a frozen
# dataclass pays an object.__setattr__ per field). Treat them as read-only all the same.
@dataclass(slots=True)
class WorkflowTask:
    """A leased workflow task. ``history_length`` is how many events the run had when leased;
    ``run_key`` is the storage's key for the run."""

    workflow_id: str
    run_id: str
    workflow_type: str
    history_length: int
    token: int
    run_key: int
    #: Optionally, the encoded events from ``tail_from`` on, so a worker whose cached
    #: instance has seen everything before ``tail_from`` needs no separate history read.
    tail_from: int = 0
    history_tail: bytes | None = None


@dataclass(slots=True)
class ActivityTask:
    """A leased activity attempt."""

    activity_id: str
    token: int
    workflow_id: str
    run_id: str
    activity_type: str
    input: bytes
    attempt: int
    heartbeat_details: bytes
    scheduled_ms: int
    started_ms: int
    deadline_ms: int | None
    heartbeat_timeout_ms: int | None
    task_queue: str
    #: The storage's key for the activity: its run's, and its ActivityScheduled event's id
    #: (which also lets a worker fuse the result with the workflow task it wakes).
    run_key: int
    scheduled_event_id: int


class ChangeNotices:
    """Futures resolved by the next change a storage object makes (see
    ``wait_for_change``): take one *before* reading the state you mean to wait on, so a change
    made in between is not missed."""

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    def next(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        return future

    def changed(self) -> None:
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)


#: A worker's activity slots (``_core.SlotPool``): an operation that leases attempts to its
#: caller (an eager commit, a poll) takes one for each attempt it leases, as late as the
#: storage can (the SQLite store as the operation runs on its thread), and gives back the
#: ones it took but did not lease. A leased attempt's slot stays taken: it runs in it, and
#: the caller gives it back when the attempt's function ends.
ActivitySlots: TypeAlias = _core.SlotPool


class SlotHold:
    """The slots an operation of a storage that decides in Python takes while it runs:
    ``granted`` of them (all of ``wanted`` without a pool, which the caller vouches for);
    those it did not ``keep`` for the attempts it leased go back at the end."""

    __slots__ = ("granted", "kept", "pool")

    def __init__(self, pool: ActivitySlots | None, wanted: int) -> None:
        self.pool = pool
        self.granted = wanted if pool is None else (pool.take(wanted) if wanted > 0 else 0)
        self.kept = 0

    def keep(self, leased: int) -> None:
        """``leased`` of the slots stay taken, by the attempts the operation leased."""
        self.kept = leased

    def __enter__(self) -> SlotHold:
        return self

    def __exit__(self, *exception: object) -> None:
        if self.pool is not None:
            self.pool.give(self.granted - self.kept)


@dataclass(slots=True)
class CommittedTask:
    """What committing a workflow task's outcome gave back."""

    #: Attempts the outcome scheduled, already leased to the caller (eager execution).
    activities: list[ActivityTask]
    #: The run's history length after the commit, and the encoded events the commit appended
    #: (the task's own), where the storage reports them: a cached instance that knows them can
    #: take its next step without reading them back.
    history_length: int | None = None
    appended: bytes | None = None


@dataclass(slots=True)
class QueryTask:
    workflow_id: str
    run_id: str
    query_name: str
    input: bytes
    #: What the storage answers it by (its own).
    handle: object


class WorkflowExecutionStatus(str, enum.Enum):
    """A run's status, by temporalio's names. A ``str``: it equals its name (``status ==
    "RUNNING"``), prints as it, and is what ``list_workflows(status=...)`` takes."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TERMINATED = "TERMINATED"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class WorkflowDescription:
    """What ``describe`` and ``list`` report about a run."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: WorkflowExecutionStatus
    history_length: int
    start_time: datetime
    close_time: datetime | None
    last_task_failure: str | None
    #: The attempt of the run's current (or next) workflow task: 1, or one more than the tasks
    #: that failed in a row before it (as temporalio's pending workflow task attempt).
    task_attempt: int = 1
    #: Signals the run dropped because their payload did not decode as the signal's type
    #: (each is logged by the worker that dropped it).
    dropped_signals: int = 0
    #: The identity of the worker that holds the run's workflow task (its lease) now, as
    #: ``describe`` reads it; None when none does (and in a listing, which does not read it).
    #: A worker is named by its storage's ``identity=``, by default ``pid@hostname``
    #: (temporalio's default).
    lease_identity: str | None = None

    @property
    def id(self) -> str:
        """The workflow id (temporalio's ``WorkflowExecution.id``)."""
        return self.workflow_id


def default_identity() -> str:
    """A worker's identity when none is given: ``pid@hostname``, as temporalio's."""
    import os
    import socket

    return f"{os.getpid()}@{socket.gethostname()}"


#: The statuses a run's description carries (``WorkflowDescription.status``): open, then the
#: four ways a run closes.
#: The statuses a run can have (the core's names).
WORKFLOW_STATUSES: tuple[str, ...] = _core.WORKFLOW_STATUSES


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    """One page of :meth:`Storage.list_workflows`.

    Attributes:
        runs: The runs of the page, in key order (the order they started in).
        next_after_run_key: When the page is full (more runs may follow), the key of its last
            run: pass it as ``after_run_key`` for the next page. None when it is the last.
    """

    runs: list[WorkflowDescription]
    next_after_run_key: int | None


def page_from_rows(rows: list[SummaryTuple], page_size: int) -> WorkflowPage:
    """A page from the rows a storage read (in key order, at most ``page_size``)."""
    return WorkflowPage(
        [description_from_row(row) for row in rows],
        rows[-1][0] if rows and len(rows) >= page_size else None,
    )


def description_from_row(row: SummaryTuple, this_process: str | None = None) -> WorkflowDescription:
    """A description from the row layout every storage reports runs in: `(key, workflow_id,
    run_id, workflow_type, task_queue, status, history_length, started_ms, closed_ms,
    last_task_failure, (task_failures, dropped_signals, leased, lease_identity))`. A leased
    run whose store names no holder is held by ``this_process`` (a memory store's)."""
    (
        _,
        workflow_id,
        run_id,
        workflow_type,
        task_queue,
        status,
        length,
        started,
        closed,
        failure,
        (task_failures, dropped_signals, leased, lease_identity),
    ) = row
    if leased and lease_identity is None:
        lease_identity = this_process
    return WorkflowDescription(
        workflow_id=workflow_id,
        run_id=run_id,
        workflow_type=workflow_type,
        task_queue=task_queue,
        status=WorkflowExecutionStatus(status),
        history_length=length,
        start_time=datetime.fromtimestamp(started / 1000, tz=timezone.utc),
        close_time=None
        if closed is None
        else datetime.fromtimestamp(closed / 1000, tz=timezone.utc),
        last_task_failure=failure,
        task_attempt=task_failures + 1,
        dropped_signals=dropped_signals,
        lease_identity=lease_identity if leased else None,
    )


@dataclass(frozen=True)
class StorageCapabilities:
    """What a storage offers beyond the core contract, declared so a worker need not guess.

    Attributes:
        groups_commits: Concurrent calls cost less than the same calls one after another (the
            storage commits them together): the worker advances a batch of workflow tasks
            concurrently instead of one by one.
        fuses_commits: The storage implements :class:`FusedCommits`.
        eager: The storage may hand work straight to the caller where a call offers it (a
            start's first task, the attempts a commit schedules, the task a result wakes);
            others ignore those offers and always return none.
    """

    groups_commits: bool = False
    fuses_commits: bool = False
    eager: bool = False


@runtime_checkable
class Storage(Protocol):
    """Async storage for histories and task queues: the core contract. All times are Unix
    milliseconds."""

    capabilities: StorageCapabilities

    def now_ms(self) -> int:
        """The storage's clock (a virtual one in tests)."""
        ...

    # Client side.
    async def start_workflow(
        self,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        input: bytes,
        *,
        eager_lease_ms: int | None = None,
    ) -> WorkflowTask | None:
        """Records the run and queues its first workflow task. With ``eager_lease_ms`` (the
        caller has a worker for ``task_queue`` in this process), a storage with the ``eager``
        capability may return that task already leased instead (no poll, no second commit);
        others return None. Raises ``WorkflowAlreadyStartedError`` while a run with this id
        is open (one open run per workflow id, enforced by the storage's unique index)."""
        ...

    async def signal_workflow(self, workflow_id: str, signal_name: str, input: bytes) -> None: ...
    async def request_cancel_workflow(self, workflow_id: str, reason: str) -> None: ...
    async def terminate_workflow(self, workflow_id: str, reason: str) -> None: ...
    async def describe_workflow(self, workflow_id: str) -> WorkflowDescription: ...
    async def list_workflows(
        self,
        *,
        after_run_key: int | None = None,
        page_size: int,
        status: str | None = None,
        workflow_type: str | None = None,
    ) -> WorkflowPage:
        """One page of runs, in key order (the order they started in): up to ``page_size``
        runs whose key is greater than ``after_run_key`` (None: from the first), only those of
        ``status`` (one of :data:`WORKFLOW_STATUSES`) and of ``workflow_type`` when given.

        One read, keyset-paginated (``run_key > ? ORDER BY run_key LIMIT ?``, never an
        offset): a page costs its own rows however many runs come before it, and a run is
        listed at most once however runs start and close between pages (as it stood when its
        page was read)."""
        ...

    async def read_history(self, workflow_id: str, run_id: str, from_event_id: int = 1) -> bytes:
        """Encoded events of a run from ``from_event_id`` (inclusive) to the end."""
        ...

    async def wait_closed(self, workflow_id: str, run_id: str, timeout: float | None) -> bytes:
        """Waits for the run to close and returns encoded events of it that end with its
        closing event (often that event alone); raises ``TimeoutError`` after ``timeout``
        seconds."""
        ...

    async def query_workflow(
        self, workflow_id: str, query_name: str, input: bytes, timeout: float
    ) -> bytes: ...

    # Worker side.
    async def poll_workflow_tasks(
        self, task_queue: str, lease_ms: int, max_tasks: int
    ) -> list[WorkflowTask]:
        """Applies due deadlines, then leases up to ``max_tasks`` ready workflow tasks."""
        ...

    async def complete_workflow_task(
        self,
        task: WorkflowTask,
        outcome: bytes | None,
        *,
        eager_activity_queue: str | None = None,
        eager_activity_slots: int = 0,
        eager_slots: ActivitySlots | None = None,
    ) -> CommittedTask:
        """Commits the outcome, fenced by the lease (``StaleTaskError`` when it lapsed: then
        nothing is recorded). With the ``eager`` capability, may return up to
        ``eager_activity_slots`` attempts the outcome scheduled on ``eager_activity_queue``,
        already leased to the caller; with ``eager_slots``, only as many as it could take
        from there (see ``ActivitySlots``)."""
        ...

    async def fail_workflow_task(self, task: WorkflowTask, message: str) -> None:
        """The worker could not run the task: nothing is recorded; it is retried with
        backoff and ``describe`` shows ``message``."""
        ...

    async def poll_activity_tasks(
        self, task_queue: str, max_tasks: int, *, slots: ActivitySlots | None = None
    ) -> list[ActivityTask]:
        """Applies due deadlines, then leases up to ``max_tasks`` ready activity attempts;
        with ``slots``, only as many as it could take from there (see ``ActivitySlots``)."""
        ...

    async def complete_activity_task(
        self, task: ActivityTask, result: bytes, *, eager_workflow_lease_ms: int | None = None
    ) -> WorkflowTask | None:
        """Records the result (``StaleTaskError`` once the attempt is over). With the
        ``eager`` capability and ``eager_workflow_lease_ms``, may return the workflow task the
        result woke (if its run uses the activity's task queue), leased to the caller."""
        ...

    async def fail_activity_task(self, task: ActivityTask, failure: FailureTuple) -> None:
        """The attempt failed: retried under its policy, or the failure is recorded."""
        ...

    async def heartbeat_activity_task(self, task: ActivityTask, details: bytes) -> None:
        """Raises ``StaleTaskError`` once the attempt is over (cancelled or timed out)."""
        ...

    async def poll_query(self, task_queue: str) -> QueryTask | None: ...
    async def answer_query(
        self, query: QueryTask, result: bytes | None, error: str | None
    ) -> None: ...
    async def wait_for_work(self, task_queue: str, timeout: float | None) -> None:
        """Sleeps until something may have changed for ``task_queue`` or ``timeout`` passed."""
        ...

    def wait_for_change(self) -> asyncio.Future[None]:
        """A future that completes at the next change made through this storage object after
        this call. Take it *before* reading the state you mean to wait on."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SizedByWorkers(Protocol):
    """A storage that pools connections and sizes the pool from the workers running on it."""

    def worker_started(self, pollers: int) -> None:
        """A worker with ``pollers`` pollers (each may hold a connection while it polls)
        starts on this storage."""
        ...

    def worker_stopped(self, pollers: int) -> None:
        """That worker stopped."""
        ...


@runtime_checkable
class FusedCommits(Protocol):
    """A storage that commits a run's start or an activity's result together with the
    workflow task it wakes, which a worker of this process ran before anything was recorded
    (``StorageCapabilities.fuses_commits``)."""

    async def start_workflow_with_first_task(
        self,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        input: bytes,
        started_event: bytes,
        outcome: bytes,
        *,
        eager_activity_queue: str | None = None,
        eager_activity_slots: int = 0,
        eager_slots: ActivitySlots | None = None,
    ) -> CommittedTask:
        """Records the run (``started_event``: its WorkflowStarted event as
        ``_core.encode_inbound_row`` encodes it) together with the outcome of its first
        workflow task, computed from that event: one commit instead of two. Raises
        ``WorkflowAlreadyStartedError`` like :meth:`Storage.start_workflow`, and then records
        nothing."""
        ...

    async def complete_activity_with_workflow_task(
        self,
        task: ActivityTask,
        result: bytes,
        result_event: bytes,
        history_length: int,
        outcome: bytes,
        *,
        eager_activity_queue: str | None = None,
        eager_activity_slots: int = 0,
        eager_slots: ActivitySlots | None = None,
    ) -> CommittedTask | None:
        """Records the result together with the outcome of the workflow task it woke, which
        the caller computed on a cached instance that has seen ``history_length`` events,
        feeding it ``result_event`` (the ActivityCompleted event numbered
        ``history_length + 1``). If the run's history is no longer ``history_length`` long or
        a task of it is queued or leased, only the result is recorded (as
        :meth:`Storage.complete_activity_task` would, waking the run's task) and None is
        returned: the caller's instance ran ahead and must be dropped."""
        ...


@runtime_checkable
class TimeSkipping(Protocol):
    """A storage on a :class:`~mainspring.storage.VirtualClock` that can jump it (see
    :func:`mainspring.testing.time_skipping`)."""

    def wait_for_change(self) -> asyncio.Future[None]: ...
    async def skip_to_next_wakeup(self) -> bool:
        """If nothing is ready or running, moves the clock to the next timer or timeout and
        returns True."""
        ...


def fused_commits(storage: Storage) -> FusedCommits | None:
    """The storage as :class:`FusedCommits`, if it declares and implements them."""
    if storage.capabilities.fuses_commits and isinstance(storage, FusedCommits):
        return storage
    return None
