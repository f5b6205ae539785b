"""The worker's activity side: runs leased attempts and reports their outcome.

Async activities run on the worker's loop; plain functions in its thread pool. A heartbeat that
the store refuses (the attempt timed out, or the workflow cancelled the activity) marks the
context cancelled and cancels an async activity at its next await.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _payload
from ._definitions import ActivityDefinition
from ._failure import failure_from_exception
from .activity_context import ActivityContext, ActivityInfo
from .errors import ApplicationError, PayloadError, StaleTaskError, UnknownActivityTypeError
from .storage.base import ActivityTask, Storage

if TYPE_CHECKING:
    from ._workflow_tasks import WorkflowTaskRunner
    from .worker import WorkerConfig

logger = logging.getLogger("mainspring.worker")


def _no_heartbeat(details: bytes) -> None:
    """Placeholder until the real sender (which needs the context) is attached."""


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
        self.running: set[asyncio.Task[None]] = set()
        self._heartbeats: set[asyncio.Task[None]] = set()

    async def poll_once(self) -> bool:
        """Starts every ready attempt there is a free slot for; returns whether it started any.
        (Slots are counted on the loop's thread: a set's size is the semaphore.)"""
        free = self.free_slots()
        if free <= 0:
            return False
        tasks = await self._storage.poll_activity_tasks(self._task_queue, free)
        self.start(tasks)
        return bool(tasks)

    def free_slots(self) -> int:
        return max(0, self._capacity - len(self.running))

    def start(self, tasks: list[ActivityTask]) -> None:
        """Runs leased attempts (polled, or handed over by a commit)."""
        loop = asyncio.get_running_loop()
        running = self.running
        for task in tasks:
            runner = loop.create_task(self._run(task))
            running.add(runner)
            runner.add_done_callback(running.discard)

    async def _run(self, task: ActivityTask) -> None:
        definition = self._definitions.get(task.activity_type)
        if definition is None:
            known = ", ".join(sorted(self._definitions)) or "none"
            error: BaseException = UnknownActivityTypeError(
                f"activity type {task.activity_type!r} is not registered on this worker "
                f"(registered: {known})"
            )
            await self._report_failure(task, error)
            return
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        context = ActivityContext(
            functools.partial(self._info, task), task.heartbeat_details, _no_heartbeat
        )

        def send_heartbeat(details: bytes) -> None:
            coroutine = self._heartbeat(task, details, context, current, definition.is_async)
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                sending = loop.create_task(coroutine)
                self._heartbeats.add(sending)
                sending.add_done_callback(self._heartbeats.discard)
            else:
                asyncio.run_coroutine_threadsafe(coroutine, loop)

        context._send_heartbeat = send_heartbeat
        try:
            result = await self._call(definition, task, context)
            context._returned = True
            encoded = _payload.encode(result, self._config.maximum_payload_bytes)
        except asyncio.CancelledError:
            if context.is_cancelled:
                return  # the attempt is over on the store's side; nothing to report
            raise
        except Exception as error:
            await self._report_failure(task, error)
            return
        workflows = self.workflows
        if workflows is not None and await workflows.complete_activity_and_advance(task, encoded):
            return
        try:
            woken = await self._storage.complete_activity_task(
                task,
                encoded,
                eager_workflow_lease_ms=self._lease_ms if workflows is not None else None,
            )
        except StaleTaskError:
            logger.info(
                "activity %s finished after its attempt ended; result dropped", task.activity_type
            )
            return
        if woken is not None and workflows is not None:
            await workflows.process_leased(woken)

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
        try:
            await self._storage.fail_activity_task(task, failure_from_exception(error))
        except StaleTaskError:
            logger.info("activity %s failed after its attempt ended", task.activity_type)

    async def _heartbeat(
        self,
        task: ActivityTask,
        details: bytes,
        context: ActivityContext,
        runner: asyncio.Task[Any] | None,
        is_async: bool,
    ) -> None:
        try:
            await self._storage.heartbeat_activity_task(task, details)
        except StaleTaskError:
            context._mark_cancelled()
            # Cancel the attempt only while the activity function runs: once it has returned,
            # this task is reporting (or advancing an eagerly handed workflow task).
            if is_async and runner is not None and not runner.done() and not context._returned:
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
