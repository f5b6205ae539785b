"""The SQLite store's operations as typed requests: each function makes one native
operation (``_core.SqliteOperation``, crate ``mainspring-sqlite``) and says what its result is.
Every rule these operations follow is decided by the core (``mainspring_core::rules``); the
store only loads, persists and fences.

Each takes ``now``, the time it runs at, first.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from .. import _core
from .._protocol import (
    ActivityLeaseTuple,
    CommittedTuple,
    FailureTuple,
    SummaryTuple,
    WorkflowLeaseTuple,
)

ResultT = TypeVar("ResultT")

#: A query waiting for a worker: ``(query_id, workflow_id, run_id, name, input)``.
QueryTuple = tuple[int, str, str, str, bytes]
#: A query's answer: ``(result, error)``.
AnswerTuple = tuple[bytes | None, str | None]


class Request(Generic[ResultT]):
    """One native operation and, for the type checker, what it returns."""

    __slots__ = ("operation", "pool")

    def __init__(
        self, operation: _core.SqliteOperation, pool: _core.SlotPool | None = None
    ) -> None:
        self.operation = operation
        #: The caller's slots the operation leases attempts into, as it runs (see
        #: ``storage.base.ActivitySlots``): given with the operation's own arguments.
        self.pool = pool


Operation = _core.SqliteOperation

# Runs and clients.


def start_workflow(
    now: int,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    task_queue: str,
    input: bytes,
    eager_lease_ms: int | None,
) -> Request[WorkflowLeaseTuple | None]:
    """Records the run and queues its first task, or leases it to the caller."""
    return Request(
        Operation.start_workflow(
            now, workflow_id, run_id, workflow_type, task_queue, input, eager_lease_ms
        )
    )


def start_workflow_with_first_task(
    now: int,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    task_queue: str,
    started_row: bytes,
    outcome: bytes,
    eager_queue: str | None,
    eager_slots: int,
    pool: _core.SlotPool | None = None,
) -> Request[CommittedTuple]:
    return Request(
        Operation.start_workflow_with_first_task(
            now,
            workflow_id,
            run_id,
            workflow_type,
            task_queue,
            started_row,
            outcome,
            eager_queue,
            eager_slots,
            pool,
        ),
        pool,
    )


def signal_workflow(now: int, workflow_id: str, signal_name: str, input: bytes) -> Request[None]:
    return Request(Operation.signal_workflow(now, workflow_id, signal_name, input))


def request_cancel_workflow(now: int, workflow_id: str, reason: str) -> Request[None]:
    return Request(Operation.request_cancel_workflow(now, workflow_id, reason))


def terminate_workflow(now: int, workflow_id: str, reason: str) -> Request[tuple[str, bytes]]:
    """Returns the run id and its closing event (encoded as a history)."""
    return Request(Operation.terminate_workflow(now, workflow_id, reason))


def describe_workflow(now: int, workflow_id: str) -> Request[SummaryTuple]:
    return Request(Operation.describe_workflow(now, workflow_id))


def list_workflows(
    now: int,
    after_run_key: int | None,
    page_size: int,
    status: str | None,
    workflow_type: str | None,
) -> Request[list[SummaryTuple]]:
    """A page of runs in key order: up to ``page_size`` after ``after_run_key``."""
    return Request(Operation.list_workflows(now, after_run_key, page_size, status, workflow_type))


def read_history(now: int, run_id: str, from_event_id: int) -> Request[bytes]:
    return Request(Operation.read_history(now, run_id, from_event_id))


def closing_event(now: int, run_id: str) -> Request[bytes | None]:
    """A closed run's closing event, encoded as a history; None while it runs."""
    return Request(Operation.closing_event(now, run_id))


def closing_events(now: int, run_ids: list[str]) -> Request[list[tuple[str, bytes]]]:
    """``(run_id, closing event)`` for those of ``run_ids`` that have closed."""
    return Request(Operation.closing_events(now, run_ids))


def data_version(now: int) -> Request[int]:
    """Moves whenever another connection (another process) commits."""
    return Request(Operation.data_version(now))


# Workflow tasks.


def poll_workflow_tasks(
    now: int, task_queue: str, lease_ms: int, max_tasks: int
) -> Request[tuple[int, list[WorkflowLeaseTuple]]]:
    """Applies due deadlines, then leases up to ``max_tasks`` ready tasks, oldest first, each
    with the events its run's cached instance has not seen: ``(deadlines applied, leases)``."""
    return Request(Operation.poll_workflow_tasks(now, task_queue, lease_ms, max_tasks))


def complete_workflow_task(
    now: int,
    run_key: int,
    token: int,
    outcome: bytes | None,
    leased_length: int,
    eager_queue: str | None,
    eager_slots: int,
    pool: _core.SlotPool | None = None,
) -> Request[CommittedTuple]:
    """Commits the outcome, fenced by the lease; activities it schedules on ``eager_queue``
    (up to ``eager_slots``, and with ``pool`` only into slots it takes from there) are
    recorded already leased to the caller."""
    return Request(
        Operation.complete_workflow_task(
            now, run_key, token, outcome, leased_length, eager_queue, eager_slots, pool
        ),
        pool,
    )


def fail_workflow_task(now: int, run_key: int, token: int, message: str) -> Request[None]:
    return Request(Operation.fail_workflow_task(now, run_key, token, message))


# Activity tasks.


def poll_activity_tasks(
    now: int, task_queue: str, max_tasks: int, pool: _core.SlotPool | None = None
) -> Request[tuple[int, list[ActivityLeaseTuple]]]:
    return Request(Operation.poll_activity_tasks(now, task_queue, max_tasks, pool), pool)


def complete_activity_task(
    now: int,
    run_key: int,
    scheduled_event_id: int,
    token: int,
    result: bytes,
    eager_queue: str | None,
    eager_lease_ms: int,
) -> Request[WorkflowLeaseTuple | None]:
    """Records the result (fenced by the attempt's token) and wakes the run's workflow task;
    with ``eager_queue``, leases that task to the caller if the run's tasks go there."""
    return Request(
        Operation.complete_activity_task(
            now, run_key, scheduled_event_id, token, result, eager_queue, eager_lease_ms
        )
    )


def complete_activity_with_workflow_task(
    now: int,
    run_key: int,
    scheduled_event_id: int,
    token: int,
    result_row: bytes,
    expected_length: int,
    outcome: bytes,
    eager_queue: str | None,
    eager_slots: int,
    pool: _core.SlotPool | None = None,
) -> Request[CommittedTuple | None]:
    """The result together with the task it woke; None when the run moved on and only the
    result went in."""
    return Request(
        Operation.complete_activity_with_workflow_task(
            now,
            run_key,
            scheduled_event_id,
            token,
            result_row,
            expected_length,
            outcome,
            eager_queue,
            eager_slots,
            pool,
        ),
        pool,
    )


def fail_activity_task(
    now: int, run_key: int, scheduled_event_id: int, token: int, failure: FailureTuple
) -> Request[None]:
    return Request(Operation.fail_activity_task(now, run_key, scheduled_event_id, token, failure))


def heartbeat_activity_task(
    now: int, run_key: int, scheduled_event_id: int, token: int, details: bytes
) -> Request[None]:
    return Request(
        Operation.heartbeat_activity_task(now, run_key, scheduled_event_id, token, details)
    )


# Time.


def next_wakeup(now: int) -> Request[int | None]:
    """The earliest deadline, or ready time still ahead, that a poll would act on."""
    return Request(Operation.next_wakeup(now))


def busy_and_wakeup(now: int) -> Request[tuple[int, int | None]]:
    """Tasks ready or leased now and queries waiting (zero: nothing happens before the next
    wakeup), and that wakeup."""
    return Request(Operation.busy_and_wakeup(now))


# Queries (answered by a worker, possibly in another process).


def submit_query(now: int, workflow_id: str, name: str, input: bytes) -> Request[int]:
    return Request(Operation.submit_query(now, workflow_id, name, input))


def take_query(now: int, task_queue: str) -> Request[QueryTuple | None]:
    return Request(Operation.take_query(now, task_queue))


def answer_query(now: int, query_id: int, result: bytes | None, error: str | None) -> Request[None]:
    return Request(Operation.answer_query(now, query_id, result, error))


def read_answer(now: int, query_id: int, give_up: bool) -> Request[AnswerTuple | None]:
    """The answer if there is one (the query is then deleted); with ``give_up``, deletes an
    unanswered query so no worker answers it late."""
    return Request(Operation.read_answer(now, query_id, give_up))
