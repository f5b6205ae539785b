"""``SqliteStorage``: the embedded, durable default. One SQLite file, no server.

- WAL mode; ``synchronous=FULL`` by default (a commit survives power loss), ``NORMAL`` on
  request (survives a process crash, may lose the last commits on power loss).
- Group commit: the operations of one event-loop pass run in one transaction, one fsync.
- Several processes may share the file (a client process and worker processes): SQLite's
  write lock serialises transactions, leases with fencing tokens keep two workers from running
  one task, and processes notice each other's changes by polling every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from .. import _core
from .._protocol import CommittedTuple, FailureTuple, WorkflowLeaseTuple
from ..errors import QueryFailedError, StorageError
from . import _sqlite_requests as requests
from ._sqlite_batch import LoopDatabase
from ._sqlite_requests import Request
from .base import (
    ActivitySlots,
    ActivityTask,
    ChangeNotices,
    CommittedTask,
    QueryTask,
    StorageCapabilities,
    WorkflowDescription,
    WorkflowPage,
    WorkflowTask,
    default_identity,
    description_from_row,
    page_from_rows,
)
from .memory import SystemClock, VirtualClock, activity_task

logger = logging.getLogger("mainspring.storage")

__all__ = ["DEFAULT_PATH", "SqliteStorage", "default_path"]

DEFAULT_PATH = "mainspring.db"

ResultT = TypeVar("ResultT")


def default_path() -> str:
    """The file ``$MAINSPRING_DB`` names (a path or a ``sqlite:`` URL) if set, else
    ``mainspring.db`` in the working directory."""
    from .urls import sqlite_path

    return sqlite_path(os.environ.get("MAINSPRING_DB") or DEFAULT_PATH)


class SqliteStorage:
    """Durable storage in one SQLite file.

    Args:
        path: The database file; created (with its schema) if missing.
        synchronous: ``"FULL"`` (default, survives power loss) or ``"NORMAL"``.
        clock: A :class:`VirtualClock` for tests; the system clock otherwise.
        poll_interval: How often an idle worker or a waiting client looks for changes made by
            other processes. Changes made in this process wake them at once.
        busy_timeout: How long a transaction waits for another process's write lock (the
            event loop waits with it: other processes' transactions are short).
        identity: The name this process's workers hold leases under (``describe`` shows it
            as ``lease_identity``); by default ``pid@hostname``.
    """

    capabilities = StorageCapabilities(groups_commits=True, fuses_commits=True, eager=True)

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        synchronous: str = "FULL",
        clock: VirtualClock | SystemClock | None = None,
        poll_interval: timedelta = timedelta(milliseconds=100),
        busy_timeout: timedelta = timedelta(seconds=5),
        workflow_task_retry_initial: timedelta = timedelta(seconds=1),
        workflow_task_retry_maximum: timedelta = timedelta(seconds=60),
        identity: str | None = None,
    ) -> None:
        self.identity = identity or default_identity()
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError("synchronous is 'FULL' or 'NORMAL'")
        self.path = str(path if path is not None else default_path())
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = int(busy_timeout.total_seconds() * 1000)
        self._clock = clock or SystemClock()
        self.now_ms = self._clock.now_ms
        self._poll_seconds = poll_interval.total_seconds()
        self._retry_initial_ms = int(workflow_task_retry_initial.total_seconds() * 1000)
        self._retry_maximum_ms = int(workflow_task_retry_maximum.total_seconds() * 1000)
        # Resolved by the next change made in this process (see wait_for_change).
        self._change_notices = ChangeNotices()
        # Set by the next change that may leave idle pollers something to do (then replaced).
        self._work: asyncio.Event | None = None
        self._close_waiters: dict[str, list[asyncio.Future[bytes]]] = {}
        self._watcher: asyncio.Task[None] | None = None
        if isinstance(self._clock, VirtualClock):
            self._clock.subscribe(self._notify)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._database = LoopDatabase(self._connect())

    def _connect(self) -> _core.SqliteStore:
        """Opens the file (WAL, the durability level, migrations: `mainspring-sqlite`)."""
        try:
            return _core.SqliteStore(
                self.path,
                self._busy_timeout_ms,
                self._synchronous,
                self._retry_initial_ms,
                self._retry_maximum_ms,
                identity=self.identity,
            )
        except _core.SqliteError as error:
            raise StorageError(f"cannot open the SQLite database {self.path}: {error}") from error

    async def _run(self, request: Request[ResultT]) -> ResultT:
        return await self._database.submit(request)

    async def _write(self, request: Request[ResultT]) -> ResultT:
        result = await self._database.submit(request)
        self._notify()
        return result

    def _notify(self, pollers: bool = True) -> None:
        """Wakes what waits on a change in this process; idle pollers too, unless `pollers`
        is false (the change was work handed straight to the worker that made it)."""
        self._change_notices.changed()
        work = self._work
        if pollers and work is not None:
            self._work = None
            work.set()

    def _work_event(self) -> asyncio.Event:
        """The event the next change that may give pollers work sets. Take it *before*
        reading the state you will wait on, so a change made meanwhile is not missed."""
        if self._work is None:
            self._work = asyncio.Event()
        return self._work

    async def _wait_changed(self, timeout: float | None, changed: Awaitable[Any]) -> None:
        """Waits for `changed`, at most `timeout` and at most one poll interval (other
        processes' changes wake nobody here)."""
        wait = self._poll_seconds if timeout is None else min(timeout, self._poll_seconds)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed, max(wait, 0.0))

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
        lease = await self._run(
            requests.start_workflow(
                self.now_ms(), workflow_id, run_id, workflow_type, task_queue, input,
                eager_lease_ms,
            )
        )  # fmt: skip
        self._notify(pollers=lease is None)  # else the caller advances the first task
        return None if lease is None else _workflow_task(lease)

    async def signal_workflow(self, workflow_id: str, signal_name: str, input: bytes) -> None:
        await self._write(requests.signal_workflow(self.now_ms(), workflow_id, signal_name, input))

    async def request_cancel_workflow(self, workflow_id: str, reason: str) -> None:
        await self._write(requests.request_cancel_workflow(self.now_ms(), workflow_id, reason))

    async def terminate_workflow(self, workflow_id: str, reason: str) -> None:
        run_id, closing = await self._write(
            requests.terminate_workflow(self.now_ms(), workflow_id, reason)
        )
        self._run_closed(run_id, closing)

    async def describe_workflow(self, workflow_id: str) -> WorkflowDescription:
        row = await self._run(requests.describe_workflow(self.now_ms(), workflow_id))
        return description_from_row(row)

    async def list_workflows(
        self,
        *,
        after_run_key: int | None = None,
        page_size: int,
        status: str | None = None,
        workflow_type: str | None = None,
    ) -> WorkflowPage:
        rows = await self._run(
            requests.list_workflows(self.now_ms(), after_run_key, page_size, status, workflow_type)
        )
        return page_from_rows(rows, page_size)

    async def read_history(self, workflow_id: str, run_id: str, from_event_id: int = 1) -> bytes:
        return await self._run(requests.read_history(self.now_ms(), run_id, from_event_id))

    async def wait_closed(self, workflow_id: str, run_id: str, timeout: float | None) -> bytes:
        loop = asyncio.get_running_loop()
        # Registered before the status is read, so a close in between is not missed.
        closed: asyncio.Future[bytes] = loop.create_future()
        waiters = self._close_waiters.setdefault(run_id, [])
        waiters.append(closed)
        try:
            closing = await self._run(requests.closing_event(self.now_ms(), run_id))
            if closing is not None:
                return closing
            self._watch_other_processes()
            try:
                return await asyncio.wait_for(closed, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"workflow {workflow_id} did not close within {timeout} s"
                ) from None
        finally:
            if closed in waiters:
                waiters.remove(closed)
            if not waiters and self._close_waiters.get(run_id) is waiters:
                del self._close_waiters[run_id]

    def _run_closed(self, run_id: str, closing: bytes) -> None:
        for waiter in self._close_waiters.pop(run_id, ()):
            if not waiter.done():
                waiter.set_result(closing)

    def _watch_other_processes(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_closes())

    async def _watch_closes(self) -> None:
        """Finds runs closed by other processes while someone here waits on them. Closes made
        in this process resolve their waiters directly; for the rest, one cheap check per
        ``poll_interval`` (SQLite's data version moves only when another connection commits)
        and one query for all waiters when it moved."""
        seen_version = None
        while self._close_waiters:
            try:
                version = await self._run(requests.data_version(self.now_ms()))
                if version != seen_version:
                    waited_on = list(self._close_waiters)
                    closed = await self._run(requests.closing_events(self.now_ms(), waited_on))
                    seen_version = version
                    for run_id, closing in closed:
                        self._run_closed(run_id, closing)
            except Exception as error:
                # Never let the watcher die while someone waits on it: try again next time.
                logger.warning(
                    "looking for closed workflows failed; retrying: %s",
                    error,
                    exc_info=not isinstance(error, StorageError),
                )
            await asyncio.sleep(self._poll_seconds)

    async def query_workflow(
        self, workflow_id: str, query_name: str, input: bytes, timeout: float
    ) -> bytes:
        query_id = await self._write(
            requests.submit_query(self.now_ms(), workflow_id, query_name, input)
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self.wait_for_change()
            give_up = loop.time() >= deadline
            answer = await self._run(requests.read_answer(self.now_ms(), query_id, give_up))
            if answer is not None:
                result, error = answer
                if error is not None or result is None:
                    raise QueryFailedError(error or "query failed")
                return result
            if give_up:
                raise QueryFailedError(
                    f"no worker answered query {query_name!r} within {timeout} s"
                )
            await self._wait_changed(deadline - loop.time(), changed)

    # Worker side.

    async def poll_workflow_tasks(
        self, task_queue: str, lease_ms: int, max_tasks: int
    ) -> list[WorkflowTask]:
        applied, leases = await self._run(
            requests.poll_workflow_tasks(self.now_ms(), task_queue, lease_ms, max_tasks)
        )
        if applied:
            self._notify()  # timers fired and timeouts passed may give other pollers work
        return [_workflow_task(lease) for lease in leases]

    async def complete_workflow_task(
        self,
        task: WorkflowTask,
        outcome: bytes | None,
        *,
        eager_activity_queue: str | None = None,
        eager_activity_slots: int = 0,
        eager_slots: ActivitySlots | None = None,
    ) -> CommittedTask:
        committed = await self._run(
            requests.complete_workflow_task(
                self.now_ms(),
                task.run_key,
                task.token,
                outcome,
                task.history_length,
                eager_activity_queue,
                eager_activity_slots,
                eager_slots if eager_activity_queue is not None else None,
            )
        )
        return self._committed(task.run_id, committed, eager_activity_queue)

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
        committed = await self._run(
            requests.start_workflow_with_first_task(
                self.now_ms(),
                workflow_id,
                run_id,
                workflow_type,
                task_queue,
                started_event,
                outcome,
                eager_activity_queue,
                eager_activity_slots,
                eager_slots if eager_activity_queue is not None else None,
            )
        )
        return self._committed(run_id, committed, eager_activity_queue)

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
        committed = await self._run(
            requests.complete_activity_with_workflow_task(
                self.now_ms(),
                task.run_key,
                task.scheduled_event_id,
                task.token,
                result_event,
                history_length,
                outcome,
                eager_activity_queue,
                eager_activity_slots,
                eager_slots if eager_activity_queue is not None else None,
            )
        )
        if committed is None:
            self._notify()  # the result alone went in and queued the run's task
            return None
        return self._committed(task.run_id, committed, eager_activity_queue)

    def _committed(
        self, run_id: str, committed: CommittedTuple, eager_queue: str | None
    ) -> CommittedTask:
        closing, leases, wakes_pollers, appended, history_length = committed
        if closing is not None:
            self._run_closed(run_id, closing)
        # Pollers are woken only when the commit left them something (queued work, a new
        # timer): a chain of eager tasks does not wake every poller.
        self._notify(pollers=wakes_pollers)
        assert eager_queue is not None or not leases
        return CommittedTask(
            [activity_task(lease, eager_queue or "") for lease in leases],
            history_length,
            appended,
        )

    async def fail_workflow_task(self, task: WorkflowTask, message: str) -> None:
        await self._write(
            requests.fail_workflow_task(self.now_ms(), task.run_key, task.token, message)
        )

    async def poll_activity_tasks(
        self, task_queue: str, max_tasks: int, *, slots: ActivitySlots | None = None
    ) -> list[ActivityTask]:
        applied, leases = await self._run(
            requests.poll_activity_tasks(self.now_ms(), task_queue, max_tasks, slots),
        )
        if applied:
            self._notify()
        return [activity_task(lease, task_queue) for lease in leases]

    async def complete_activity_task(
        self, task: ActivityTask, result: bytes, *, eager_workflow_lease_ms: int | None = None
    ) -> WorkflowTask | None:
        eager_queue = None if eager_workflow_lease_ms is None else task.task_queue
        lease = await self._run(
            requests.complete_activity_task(
                self.now_ms(),
                task.run_key,
                task.scheduled_event_id,
                task.token,
                result,
                eager_queue,
                eager_workflow_lease_ms or 0,
            )
        )
        self._notify(pollers=lease is None)  # else the caller advances the task it woke
        return None if lease is None else _workflow_task(lease)

    async def fail_activity_task(self, task: ActivityTask, failure: FailureTuple) -> None:
        await self._write(
            requests.fail_activity_task(
                self.now_ms(), task.run_key, task.scheduled_event_id, task.token, failure
            )
        )

    async def heartbeat_activity_task(self, task: ActivityTask, details: bytes) -> None:
        await self._run(
            requests.heartbeat_activity_task(
                self.now_ms(), task.run_key, task.scheduled_event_id, task.token, details
            )
        )

    async def poll_query(self, task_queue: str) -> QueryTask | None:
        row = await self._run(requests.take_query(self.now_ms(), task_queue))
        if row is None:
            return None
        query_id, workflow_id, run_id, name, input = row
        return QueryTask(workflow_id, run_id, name, input, query_id)

    async def answer_query(self, query: QueryTask, result: bytes | None, error: str | None) -> None:
        assert isinstance(query.handle, int)
        await self._write(requests.answer_query(self.now_ms(), query.handle, result, error))

    async def wait_for_work(self, task_queue: str, timeout: float | None) -> None:
        changed = self._work_event()
        now = self.now_ms()
        wakeup = await self._run(requests.next_wakeup(now))
        if wakeup is not None and wakeup <= now:
            return
        if wakeup is not None and not self._clock.is_virtual:
            until_wakeup = (wakeup - now) / 1000
            timeout = until_wakeup if timeout is None else min(timeout, until_wakeup)
        await self._wait_changed(timeout, changed.wait())

    async def skip_to_next_wakeup(self) -> bool:
        """With a :class:`VirtualClock`: if no task is ready or running, moves the clock to the
        next timer or timeout. Used by :func:`mainspring.testing.time_skipping`."""
        clock = self._clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("time skipping needs SqliteStorage(clock=VirtualClock())")
        busy, wakeup = await self._run(requests.busy_and_wakeup(clock.now_ms()))
        now = clock.now_ms()
        if busy or wakeup is None or wakeup <= now:
            return False
        clock.advance((wakeup - now) / 1000)
        return True

    def wait_for_change(self) -> asyncio.Future[None]:
        """A future that completes at the next change made through this storage object after
        this call. Take it *before* reading the state you mean to wait on, so a change made
        in between is not missed."""
        return self._change_notices.next()

    async def close(self) -> None:
        self._notify()
        if self._watcher is not None:
            self._watcher.cancel()
        self._database.close()


def _workflow_task(lease: WorkflowLeaseTuple) -> WorkflowTask:
    run_key, workflow_id, run_id, workflow_type, length, token, tail_from, tail = lease
    return WorkflowTask(workflow_id, run_id, workflow_type, length, token, run_key, tail_from, tail)
