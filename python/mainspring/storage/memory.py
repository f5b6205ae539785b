"""``MemoryStorage``: the native dispatcher and history store in this process, no persistence.

For tests, benchmarks and single-process apps that need no durability. Pass a
:class:`VirtualClock` to drive timers and timeouts from a test without real waiting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from .. import _core
from .._protocol import ActivityLeaseTuple, FailureTuple
from ..errors import QueryFailedError
from .base import (
    ActivitySlots,
    ActivityTask,
    ChangeNotices,
    CommittedTask,
    QueryTask,
    SlotHold,
    StorageCapabilities,
    WorkflowDescription,
    WorkflowPage,
    WorkflowTask,
    default_identity,
    description_from_row,
    page_from_rows,
)


class SystemClock:
    is_virtual = False

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class VirtualClock:
    """A clock that moves only when told to. Advancing it wakes every storage that uses it."""

    is_virtual = True

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2030, 1, 1, tzinfo=timezone.utc)
        self._now_ms = int(start.timestamp() * 1000)
        self._listeners: list[Callable[[], None]] = []

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, duration: timedelta | float) -> None:
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        self._now_ms += round(seconds * 1000)
        for listener in self._listeners:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


def activity_task(lease: ActivityLeaseTuple, task_queue: str) -> ActivityTask:
    """An :class:`ActivityTask` from a lease tuple (the layout every store hands out)."""
    (run_key, scheduled_event_id, activity_id, token, workflow_id, run_id, activity_type, input,
     attempt, details, scheduled, started, deadline, heartbeat_timeout) = lease  # fmt: skip
    # Positional, in the field order of ActivityTask: one per attempt on the hot path, and
    # keywords cost it three times as much.
    return ActivityTask(
        activity_id, token, workflow_id, run_id, activity_type, input, attempt, details,
        scheduled, started, deadline, heartbeat_timeout, task_queue, run_key, scheduled_event_id,
    )  # fmt: skip


class MemoryStorage:
    """In-process storage backed by the native core. Nothing survives the process."""

    # Every call completes at once: concurrency would only add cost, and there are no commits
    # to save by fusing them or by handing work out eagerly.
    capabilities = StorageCapabilities()

    def __init__(
        self,
        *,
        clock: VirtualClock | SystemClock | None = None,
        workflow_task_retry_initial: timedelta = timedelta(seconds=1),
        workflow_task_retry_maximum: timedelta = timedelta(seconds=60),
        identity: str | None = None,
    ) -> None:
        #: Who holds this store's leases: this process, always (``describe`` names it).
        self.identity = identity or default_identity()
        self._store = _core.MemoryStore(
            int(workflow_task_retry_initial.total_seconds() * 1000),
            int(workflow_task_retry_maximum.total_seconds() * 1000),
        )
        self._clock = clock or SystemClock()
        self._changed: asyncio.Event | None = None
        self._run_keys: dict[tuple[str, str], int] = {}
        self._queries: dict[str, collections.deque[QueryTask]] = {}
        # Who waits for which run to close: woken only by that run, not by every change.
        self._close_waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}
        self._change_notices = ChangeNotices()
        self.now_ms = self._clock.now_ms  # type: ignore[method-assign]
        if isinstance(self._clock, VirtualClock):
            self._clock.subscribe(self._notify)

    def now_ms(self) -> int:
        return self._clock.now_ms()

    def _notify(self) -> None:
        self._change_notices.changed()
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    async def _wait_changed(self, timeout: float | None) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        if timeout is None:
            await changed.wait()
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), max(timeout, 0.0))

    def _run_key(self, workflow_id: str, run_id: str) -> int:
        key = self._run_keys.get((workflow_id, run_id))
        if key is None:
            key = self._store.describe(workflow_id)[0]
        return key

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
        # No eager start: in memory a poll costs no commit, so it would save nothing.
        run_key = self._store.start_workflow(
            workflow_id, run_id, workflow_type, task_queue, input, self.now_ms()
        )
        self._run_keys[(workflow_id, run_id)] = run_key
        self._notify()
        return None

    async def signal_workflow(self, workflow_id: str, signal_name: str, input: bytes) -> None:
        self._store.signal_workflow(workflow_id, signal_name, input, self.now_ms())
        self._notify()

    async def request_cancel_workflow(self, workflow_id: str, reason: str) -> None:
        self._store.request_cancel_workflow(workflow_id, reason, self.now_ms())
        self._notify()

    async def terminate_workflow(self, workflow_id: str, reason: str) -> None:
        run_id = self._store.describe(workflow_id)[2]
        self._store.terminate_workflow(workflow_id, reason, self.now_ms())
        self._notify()
        self._run_closed(workflow_id, run_id)

    async def describe_workflow(self, workflow_id: str) -> WorkflowDescription:
        return description_from_row(self._store.describe(workflow_id), self.identity)

    async def list_workflows(
        self,
        *,
        after_run_key: int | None = None,
        page_size: int,
        status: str | None = None,
        workflow_type: str | None = None,
    ) -> WorkflowPage:
        rows = self._store.list(after_run_key, max(page_size, 0), status, workflow_type)
        return page_from_rows(rows, page_size)

    async def read_history(self, workflow_id: str, run_id: str, from_event_id: int = 1) -> bytes:
        return self._store.history(self._run_key(workflow_id, run_id), from_event_id)

    async def wait_closed(self, workflow_id: str, run_id: str, timeout: float | None) -> bytes:
        summary = self._store.describe(workflow_id)
        if summary[2] == run_id and summary[5] == "RUNNING":
            closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._close_waiters.setdefault((workflow_id, run_id), [])
            waiters.append(closed)
            try:
                await asyncio.wait_for(closed, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"workflow {workflow_id} did not close within {timeout} s"
                ) from None
            finally:
                if closed in waiters:
                    waiters.remove(closed)
            summary = self._store.describe(workflow_id)
        if summary[2] == run_id:
            # The closing event is the run's last: read just that one.
            return self._store.history(summary[0], summary[6])
        return self._store.history(self._run_key(workflow_id, run_id), 1)

    def _run_closed(self, workflow_id: str, run_id: str) -> None:
        for waiter in self._close_waiters.pop((workflow_id, run_id), ()):
            if not waiter.done():
                waiter.set_result(None)

    async def query_workflow(
        self, workflow_id: str, query_name: str, input: bytes, timeout: float
    ) -> bytes:
        summary = self._store.describe(workflow_id)
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        task = QueryTask(workflow_id, summary[2], query_name, input, answer)
        self._queries.setdefault(summary[4], collections.deque()).append(task)
        self._notify()
        try:
            return await asyncio.wait_for(answer, timeout)
        except asyncio.TimeoutError:
            raise QueryFailedError(
                f"no worker answered query {query_name!r} within {timeout} s"
            ) from None

    # Worker side.

    def _tick(self) -> int:
        """Applies due deadlines; returns the time it used, for the caller's poll."""
        now = self.now_ms()
        if self._store.tick(now):
            self._notify()
        return now

    async def poll_workflow_tasks(
        self, task_queue: str, lease_ms: int, max_tasks: int
    ) -> list[WorkflowTask]:
        now = self._tick()
        tasks: list[WorkflowTask] = []
        poll = self._store.poll_workflow_task
        while len(tasks) < max_tasks and (lease := poll(task_queue, now, lease_ms)) is not None:
            run_key, token, workflow_id, run_id, workflow_type, length, _deadline = lease
            tasks.append(WorkflowTask(workflow_id, run_id, workflow_type, length, token, run_key))
        return tasks

    async def complete_workflow_task(
        self,
        task: WorkflowTask,
        outcome: bytes | None,
        *,
        eager_activity_queue: str | None = None,
        eager_activity_slots: int = 0,
        eager_slots: ActivitySlots | None = None,
    ) -> CommittedTask:
        """Eager dispatch saves nothing in memory: always returns no activities."""
        closed = self._store.complete_workflow_task(
            task.run_key, task.token, outcome, task.history_length, self.now_ms()
        )
        self._notify()
        if closed:
            self._run_closed(task.workflow_id, task.run_id)
        return CommittedTask([])

    async def fail_workflow_task(self, task: WorkflowTask, message: str) -> None:
        self._store.fail_workflow_task(task.run_key, task.token, message, self.now_ms())
        self._notify()

    async def poll_activity_tasks(
        self, task_queue: str, max_tasks: int, *, slots: ActivitySlots | None = None
    ) -> list[ActivityTask]:
        now = self._tick()
        tasks: list[ActivityTask] = []
        poll = self._store.poll_activity_task
        with SlotHold(slots, max_tasks) as hold:
            while len(tasks) < hold.granted and (lease := poll(task_queue, now)) is not None:
                tasks.append(activity_task(lease, task_queue))
            hold.keep(len(tasks))
        return tasks

    async def complete_activity_task(
        self, task: ActivityTask, result: bytes, *, eager_workflow_lease_ms: int | None = None
    ) -> WorkflowTask | None:
        """Eager dispatch saves nothing in memory: always returns no workflow task."""
        self._store.complete_activity_task(
            task.run_key, task.scheduled_event_id, task.token, result, self.now_ms()
        )
        self._notify()
        return None

    async def fail_activity_task(self, task: ActivityTask, failure: FailureTuple) -> None:
        self._store.fail_activity_task(
            task.run_key, task.scheduled_event_id, task.token, failure, self.now_ms()
        )
        self._notify()

    async def heartbeat_activity_task(self, task: ActivityTask, details: bytes) -> None:
        self._store.heartbeat_activity_task(
            task.run_key, task.scheduled_event_id, task.token, details, self.now_ms()
        )

    async def poll_query(self, task_queue: str) -> QueryTask | None:
        queue = self._queries.get(task_queue)
        return queue.popleft() if queue else None

    async def answer_query(self, query: QueryTask, result: bytes | None, error: str | None) -> None:
        answer = query.handle
        assert isinstance(answer, asyncio.Future)
        if answer.done():
            return
        if error is not None or result is None:
            answer.set_exception(QueryFailedError(error or "query failed"))
        else:
            answer.set_result(result)

    async def wait_for_work(self, task_queue: str, timeout: float | None) -> None:
        if self._queries.get(task_queue):
            return
        now = self.now_ms()
        wakeup = self._store.next_wakeup_ms(now)
        if wakeup is not None and wakeup <= now:
            return  # a deadline is due: the next poll's tick applies it
        if wakeup is not None and not self._clock.is_virtual:
            until_wakeup = (wakeup - now) / 1000
            timeout = until_wakeup if timeout is None else min(timeout, until_wakeup)
        await self._wait_changed(timeout)

    async def close(self) -> None:
        self._notify()

    # Time skipping (tests).

    async def skip_to_next_wakeup(self) -> bool:
        """With a :class:`VirtualClock`: if no task is ready or running, moves the clock to the
        next timer or timeout and returns True. Used by :func:`mainspring.testing.time_skipping`."""
        clock = self._clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("time skipping needs MemoryStorage(clock=VirtualClock())")
        now = clock.now_ms()
        if self._store.busy_count(now) or any(self._queries.values()):
            return False
        wakeup = self._store.next_wakeup_ms(now)
        if wakeup is None or wakeup <= now:
            return False
        clock.advance((wakeup - now) / 1000)
        return True

    def wait_for_change(self) -> asyncio.Future[None]:
        """A future that completes at the next change made through this storage object after
        this call. Take it *before* reading the state you mean to wait on, so a change made
        in between is not missed."""
        return self._change_notices.next()
