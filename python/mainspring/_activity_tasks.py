"""The worker's activity side: runs leased attempts and reports their outcome.

Async activities run on the worker's loop; plain functions in its thread pool. A heartbeat that
the store refuses (the attempt timed out, or the workflow cancelled the activity) marks the
context cancelled and cancels an async activity at its next await.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from . import _core, _payload
from ._attempts import Attempt, DeadlineWatch
from ._definitions import ActivityDefinition
from ._failure import failure_from_exception
from .activity_context import ActivityContext, ActivityInfo
from .errors import (
    ApplicationError,
    PayloadError,
    PayloadTooLargeError,
    StaleTaskError,
    StorageError,
    UnknownActivityTypeError,
)
from .storage.base import ActivityTask, Storage

if TYPE_CHECKING:
    from ._workflow_tasks import WorkflowTaskRunner
    from .worker import WorkerConfig

logger = logging.getLogger("mainspring.worker")

ResultT = TypeVar("ResultT")

# Reporting an outcome when the storage fails: tries, and the backoff between them.
_REPORT_TRIES = 6
_REPORT_RETRY_INITIAL_SECONDS = 0.05
_REPORT_RETRY_MAXIMUM_SECONDS = 2.0


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class ActivityTaskRunner:
    def __init__(
        self,
        storage: Storage,
        task_queue: str,
        definitions: dict[str, ActivityDefinition],
        config: WorkerConfig,
        executor: concurrent.futures.Executor,
    ) -> None:
        self._storage = storage
        self._task_queue = task_queue
        self._definitions = definitions
        self._config = config
        self._executor = executor
        self._capacity = config.max_concurrent_activities
        # Set by the worker when it also runs workflows: a result that wakes a workflow task
        # of this queue can hand it straight to it (see Storage.complete_activity_task).
        self.workflows: WorkflowTaskRunner | None = None
        self._lease_ms = int(config.workflow_task_timeout.total_seconds() * 1000)
        # The running attempts, by the task that runs each (until its outcome is recorded).
        self.running: dict[asyncio.Task[None], Attempt] = {}
        # Attempts whose function is still running: what holds a slot. A finished attempt's
        # report (its commit, and the workflow task it wakes) holds none.
        self._executing = 0
        # The slots, shared with the storage: an operation that leases attempts to this
        # worker (a poll, an eager commit) takes one for each as it leases it; the attempt
        # gives it back when its function ends. Attempts running are counted apart (stats).
        self.pool = _core.SlotPool(self._capacity)
        # About how many attempts this worker's commits scheduled but could not lease (no
        # slot was free), so queued in the store for its poller: while it is more than the
        # slots can run, the workflow pollers admit few new tasks (see WorkflowTaskRunner).
        self.queued = 0
        # Slot-seconds used so far (∫ executing dt), up to _executing_since (loop time).
        self._slot_seconds = 0.0
        self._executing_since = 0.0
        self.attempts_started = 0
        # Completed when a slot frees while the poller waits for one.
        self._slot_freed: asyncio.Future[None] | None = None
        self._deadlines: DeadlineWatch | None = None

    async def poll_once(self) -> bool:
        """Starts every ready attempt there is a free slot for; returns whether it started any.
        (The poll takes the slots as it leases, so commits on their way may take some first.)"""
        free = self.free_slots()
        if free <= 0:
            return False
        shorts = self.pool.short_takes
        tasks = await self._storage.poll_activity_tasks(self._task_queue, free, slots=self.pool)
        if len(tasks) < free and self.pool.short_takes == shorts:
            # Fewer than asked with no take short meanwhile: nothing more is queued.
            self.queued = 0
        else:
            self.queued = max(0, self.queued - len(tasks))
        self.start(tasks)
        return bool(tasks)

    def free_slots(self) -> int:
        return self.pool.free

    @property
    def slots_used(self) -> int:
        return self._executing

    @property
    def capacity(self) -> int:
        return self._capacity

    def slot_seconds(self) -> float:
        """Slot-seconds held so far: over a period, divided by its length times the capacity, the
        slots' utilisation."""
        return self._slot_seconds + self._executing * (self._now() - self._executing_since)

    def _now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # asked from outside the loop: nothing runs there
            return self._executing_since

    def _slots_change(self, change: int, now: float) -> None:
        self._slot_seconds += self._executing * (now - self._executing_since)
        self._executing_since = now
        self._executing += change

    async def wait_for_work(self, storage: Storage, task_queue: str, timeout: float) -> None:
        """The activity poller's idle wait: for the storage's news while a slot is free, for
        a slot to come back while none is (an attempt's function ends, an operation gives
        back slots it took and did not lease into). Not at all when an operation wanted
        slots it could not have since the last look and one is free now: what it could not
        lease (a commit's attempt, a poll cut short) waits in the store."""
        short = self.pool.was_short()
        if self.free_slots() > 0:
            if short:
                return
            await storage.wait_for_work(task_queue, timeout)
            return
        freed = self._slot_freed
        if freed is None or freed.done():
            freed = self._slot_freed = asyncio.get_running_loop().create_future()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(freed), timeout)

    def _release_slot(self) -> None:
        self._slots_change(-1, self._now())
        self.pool.give(1)
        self.slots_returned()

    def slots_returned(self) -> None:
        """Wakes the poller if it waits for a free slot."""
        freed = self._slot_freed
        if freed is not None and not freed.done():
            freed.set_result(None)

    def start(self, tasks: list[ActivityTask]) -> None:
        """Runs leased attempts (polled, or handed over by a commit), each in the slot the
        operation that leased it took."""
        loop = asyncio.get_running_loop()
        running = self.running
        now = loop.time()
        write = self._heartbeat
        for task in tasks:
            # The deadline from when the store started the attempt: no clock read, never early.
            deadline_ms = task.deadline_ms
            attempt = Attempt(
                task,
                math.inf if deadline_ms is None else now + (deadline_ms - task.started_ms) / 1000,
                write,
            )
            self._slots_change(1, now)
            self.attempts_started += 1
            runner = loop.create_task(self._run(task, attempt))
            attempt.runner = runner
            running[runner] = attempt
            runner.add_done_callback(self._finished)
            if deadline_ms is not None:
                watch = self._deadlines
                if watch is None:
                    watch = self._deadlines = DeadlineWatch(loop, running)
                watch.started(attempt)

    def _finished(self, runner: asyncio.Task[None]) -> None:
        attempt = self.running.pop(runner, None)
        if attempt is not None:
            # The attempt and its context refer to each other: parted, both are freed now
            # rather than by the cyclic collector (a busy worker's garbage, and its RSS).
            attempt.context = None

    async def _run(self, task: ActivityTask, attempt: Attempt) -> None:
        definition = self._definitions.get(task.activity_type)
        if definition is None:
            known = ", ".join(sorted(self._definitions)) or "none"
            error: BaseException = UnknownActivityTypeError(
                f"activity type {task.activity_type!r} is not registered on this worker "
                f"(registered: {known})"
            )
            attempt.deadline_at = math.inf  # nothing runs: nothing to end at the deadline
            self._release_slot()
            await self._report_failure(task, error)
            return
        # Per attempt, the least there can be (this is the hot path of every activity): the
        # heartbeat machinery is made by the first heartbeat.
        attempt.is_async = definition.is_async
        context = ActivityContext(
            functools.partial(self._info, task), task.heartbeat_details, attempt
        )
        attempt.context = context
        try:
            try:
                result = await self._call(definition, task, context)
            finally:
                # The function is done (returned or raised): its report is not cut short, and
                # its slot is free for the next attempt while the report is recorded.
                attempt.deadline_at = math.inf
                self._release_slot()
            context._returned = True
            try:
                encoded = _payload.encode(result, self._config.maximum_payload_bytes)
            except PayloadTooLargeError as error:
                # Every attempt would produce it again: not worth a retry.
                raise ApplicationError(
                    f"the activity's result is too large: {error}",
                    type=type(error).__name__,
                    non_retryable=True,
                ) from error
        except asyncio.CancelledError:
            attempt.close()
            if context.is_cancelled:
                return  # the attempt is over on the store's side; nothing to report
            raise
        except Exception as error:
            # The latest heartbeat's details go in first: the next attempt resumes from them.
            await attempt.flush()
            if not attempt.deadline_passed:
                await self._report_failure(task, error)
            return
        attempt.close()
        if attempt.deadline_passed:
            # A thread that ran past its deadline: the store has timed the attempt out.
            logger.info("activity %s finished past its deadline; dropped", task.activity_type)
            return
        workflows = self.workflows
        if workflows is not None:
            try:
                if await workflows.complete_activity_and_advance(task, encoded):
                    return
            except StorageError as error:
                # Not recorded (every write is fenced, so recording it again is safe).
                logger.warning(
                    "recording activity %s's result with its workflow task failed; "
                    "recording it alone: %s",
                    task.activity_type,
                    error,
                )
        lease_ms = self._lease_ms if workflows is not None else None
        try:
            woken = await self._storage.complete_activity_task(
                task, encoded, eager_workflow_lease_ms=lease_ms
            )
        except StaleTaskError:
            logger.info(
                "activity %s finished after its attempt ended; result dropped", task.activity_type
            )
            return
        except StorageError as error:
            reported = await self._reporting(
                task,
                "result",
                error,
                lambda: self._storage.complete_activity_task(
                    task, encoded, eager_workflow_lease_ms=lease_ms
                ),
            )
            if reported is None:
                return
            (woken,) = reported
        if woken is not None and workflows is not None:
            await workflows.process_leased(woken)

    def close(self) -> None:
        """The worker stopped: no deadline timer is left behind on its loop."""
        if self._deadlines is not None:
            self._deadlines.close()
            self._deadlines = None

    async def _reporting(
        self,
        task: ActivityTask,
        what: str,
        first_error: StorageError,
        report: Callable[[], Awaitable[ResultT]],
    ) -> tuple[ResultT] | None:
        """Retries a report the storage failed (``first_error``) with backoff (every write is
        fenced, so a retry never records twice); after the last try it logs the loss of the
        report: the attempt then times out and is retried under its policy. None if not
        reported."""
        delay = _REPORT_RETRY_INITIAL_SECONDS
        logger.warning(
            "recording activity %s's %s failed; retrying: %s", task.activity_type, what, first_error
        )
        for attempt in range(2, _REPORT_TRIES + 1):
            await asyncio.sleep(delay)
            delay = min(delay * 2, _REPORT_RETRY_MAXIMUM_SECONDS)
            try:
                return (await report(),)
            except StaleTaskError:
                logger.info(
                    "activity %s's %s came after its attempt ended; dropped",
                    task.activity_type,
                    what,
                )
                return None
            except StorageError as error:
                if attempt == _REPORT_TRIES:
                    logger.error(
                        "could not record activity %s's %s (attempt %d) after %d tries; the "
                        "attempt will time out and be retried: %s",
                        task.activity_type,
                        what,
                        task.attempt,
                        attempt,
                        error,
                    )
                    return None
                logger.warning(
                    "recording activity %s's %s failed (try %d of %d); retrying: %s",
                    task.activity_type,
                    what,
                    attempt,
                    _REPORT_TRIES,
                    error,
                )
        return None

    async def _call(
        self, definition: ActivityDefinition, task: ActivityTask, context: ActivityContext
    ) -> Any:
        arguments: list[Any] = [context] if definition.takes_context else []
        if definition.takes_input:
            try:
                arguments.append(_payload.decode(task.input, definition.input_type))
            except PayloadError as error:
                # Retrying cannot fix an input of the wrong type.
                raise ApplicationError(
                    str(error), type=type(error).__name__, non_retryable=True
                ) from error
        if definition.is_async:
            return await definition.function(*arguments)
        call = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, call, definition.function, *arguments
        )

    async def _report_failure(self, task: ActivityTask, error: BaseException) -> None:
        failure = failure_from_exception(error)
        try:
            await self._storage.fail_activity_task(task, failure)
        except StaleTaskError:
            logger.info("activity %s failed after its attempt ended", task.activity_type)
        except StorageError as storage_error:
            await self._reporting(
                task,
                "failure",
                storage_error,
                lambda: self._storage.fail_activity_task(task, failure),
            )

    async def _heartbeat(self, attempt: Attempt, details: bytes) -> None:
        task, context, runner = attempt.task, attempt.context, attempt.runner
        try:
            await self._storage.heartbeat_activity_task(task, details)
        except StorageError as error:
            # A lost heartbeat is not fatal: the next one (or the outcome) follows.
            logger.warning("heartbeat of activity %s failed: %s", task.activity_type, error)
        except StaleTaskError:
            if context is None:
                return
            context._mark_cancelled()
            # Cancel the attempt only while the activity function runs: once it has returned,
            # this task is reporting (or advancing an eagerly handed workflow task).
            if (
                attempt.is_async
                and runner is not None
                and not runner.done()
                and not context._returned
            ):
                runner.cancel()

    def _info(self, task: ActivityTask) -> ActivityInfo:
        return ActivityInfo(
            activity_id=task.activity_id,
            activity_type=task.activity_type,
            workflow_id=task.workflow_id,
            run_id=task.run_id,
            task_queue=task.task_queue,
            attempt=task.attempt,
            scheduled_time=_datetime(task.scheduled_ms),
            started_time=_datetime(task.started_ms),
            deadline=None if task.deadline_ms is None else _datetime(task.deadline_ms),
            heartbeat_timeout=(
                None
                if task.heartbeat_timeout_ms is None
                else timedelta(milliseconds=task.heartbeat_timeout_ms)
            ),
        )
