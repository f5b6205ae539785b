"""The worker: polls one task queue for workflow tasks, activity tasks and queries."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

from . import _collector
from ._activity_tasks import ActivityTaskRunner
from ._definitions import activity_definition, workflow_definition
from ._payload import DEFAULT_MAXIMUM_PAYLOAD_BYTES
from ._workflow_tasks import WorkflowTaskRunner
from .client import Client
from .errors import MainspringError
from .storage.base import SizedByWorkers

__all__ = ["Worker", "WorkerConfig", "WorkerStats"]

logger = logging.getLogger("mainspring.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """Tuning knobs of a worker (the seed's WorkerConfig).

    Attributes:
        max_concurrent_activities: Activity functions running at once (a slot is held while
            the function runs; recording its outcome holds none, and a freed slot wakes the
            poller at once). A hard bound: an attempt a workflow task's commit leases to this
            worker directly (eager execution) runs in a slot the commit reserved.
        max_cached_workflows: Live workflow instances kept between tasks (sticky execution),
            least recently used evicted first; 0 rebuilds every instance by replay on every
            task. An evicted workflow is rebuilt by replay when its next task comes.
        max_cached_history_bytes: Bound on the history the cached instances keep, in bytes
            (the events replay still needs and each one's last commit): past it the least
            recently used are evicted, so a few huge histories cannot exhaust memory. What
            workflow code itself holds is not counted.
        max_concurrent_workflow_tasks: Workflow-task pollers, each handling up to
            ``workflow_task_batch`` tasks at once. Two (the default) let one poll and run tasks
            while the other's commits are on their way to the storage.
        workflow_task_batch: Workflow tasks a poller handles back to back before it yields the
            loop to activities (more is faster, less is fairer); also how many first workflow
            tasks handed over by starts in this process (eager start) may wait to run. While
            more attempts this worker's tasks scheduled wait in the store than its activity
            slots can run, a poll takes at most 8.
        activity_threads: Threads for plain ``def`` activities.
        workflow_task_timeout: Lease on a workflow task; past it, another worker takes over.
        poll_interval: Longest idle wait between polls when the storage sends no wake-up.
        graceful_shutdown_timeout: How long shutdown waits for running activities.
        maximum_payload_bytes: Largest payload a workflow or activity may produce.
        workflow_failure_exception_types: Exception types that fail a run when its workflow
            code leaves them unhandled, for every workflow of this worker (besides
            ``FailureError`` and each workflow's own ``failure_exception_types``); any other
            exception fails the workflow task, which is retried. As temporalio's.
        gc_threshold: While the worker runs, Python's cyclic garbage collector waits for this
            many new container objects between collections of its youngest generation
            (CPython's default, 700, makes it run every few workflow tasks and costs 10-17% of
            a busy worker's time); ``None`` leaves the collector alone. Process-wide: the last
            worker to stop restores the previous setting.
    """

    max_concurrent_activities: int = 100
    max_cached_workflows: int = 10_000
    max_cached_history_bytes: int = 256 * 1024 * 1024
    max_concurrent_workflow_tasks: int = 2
    workflow_task_batch: int = 128
    activity_threads: int = 16
    workflow_task_timeout: timedelta = timedelta(seconds=10)
    poll_interval: timedelta = timedelta(seconds=1)
    graceful_shutdown_timeout: timedelta = timedelta(seconds=10)
    maximum_payload_bytes: int = DEFAULT_MAXIMUM_PAYLOAD_BYTES
    gc_threshold: int | None = 10_000
    workflow_failure_exception_types: Sequence[type[BaseException]] = ()

    def __post_init__(self) -> None:
        # A lease lapses at its deadline: one shorter than a millisecond would be over when
        # granted, and every commit under it refused.
        if self.workflow_task_timeout < timedelta(milliseconds=1):
            raise ValueError("workflow_task_timeout must be at least a millisecond")


@dataclass(frozen=True)
class WorkerStats:
    """A snapshot of a worker's slots and cache (:meth:`Worker.stats`). The names follow
    Temporal's worker metrics (``temporal_worker_task_slots_used``,
    ``temporal_sticky_cache_size``, ...), which the observability layer will export under
    ``mainspring_`` names.

    Attributes:
        activity_task_slots_used: Activity functions running now (each holds a slot).
        activity_task_slots_available: Slots free now: ``max_concurrent_activities`` minus
            those attempts run in and those operations on their way (a poll, an eager commit)
            have taken for the attempts they lease.
        activity_slot_seconds: Slot-seconds held since the worker was made: the difference
            between two snapshots over their interval times ``max_concurrent_activities`` is the
            slots' utilisation.
        activity_attempts_started: Activity attempts started since the worker was made.
        activity_attempts_reporting: Attempts whose function has returned and whose outcome
            is being recorded (they hold no slot).
        workflow_eager_starts_running: First workflow tasks of starts in this process being
            advanced right now.
        workflow_completed: Runs this worker closed (completed, failed or cancelled by their
            code) since it was made.
        sticky_cache_size: Workflow instances cached.
        sticky_cache_bytes: History bytes the cached instances keep (see
            ``max_cached_history_bytes``).
        sticky_cache_hit: Workflow tasks and queries that found their instance cached.
        sticky_cache_miss: Those that rebuilt it by replay.
        sticky_cache_total_forced_eviction: Instances evicted to keep within the bounds.
    """

    activity_task_slots_used: int
    activity_task_slots_available: int
    activity_slot_seconds: float
    activity_attempts_started: int
    activity_attempts_reporting: int
    workflow_eager_starts_running: int
    workflow_completed: int
    sticky_cache_size: int
    sticky_cache_bytes: int
    sticky_cache_hit: int
    sticky_cache_miss: int
    sticky_cache_total_forced_eviction: int


class Worker:
    """Runs the given workflows and activities for one task queue.

    Use ``await worker.run()`` (returns after :meth:`shutdown`) or ``async with worker:``.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        task_queue: str,
        workflows: Sequence[Callable[..., Any]] = (),
        activities: Sequence[Callable[..., Any]] = (),
        config: WorkerConfig | None = None,
    ) -> None:
        if not workflows and not activities:
            raise ValueError("a worker needs at least one workflow or activity")
        # Without a client: the embedded default storage (see Client).
        self.client = client if client is not None else Client()
        self.task_queue = task_queue
        self.config = config or WorkerConfig()
        workflow_definitions = {
            definition.name: definition for definition in map(workflow_definition, workflows)
        }
        activity_definitions = {
            definition.name: definition for definition in map(activity_definition, activities)
        }
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.activity_threads, thread_name_prefix="mainspring-activity"
        )
        storage = self.client.storage
        self._workflow_runner = WorkflowTaskRunner(
            storage, task_queue, workflow_definitions, self.config
        )
        self._activity_runner = ActivityTaskRunner(
            storage, task_queue, activity_definitions, self.config, self._executor
        )
        self._has_workflows = bool(workflow_definitions)
        self._has_activities = bool(activity_definitions)
        if self._has_workflows and self._has_activities:
            # Eager dispatch between the two sides of this worker (storages that support it).
            self._workflow_runner.activities = self._activity_runner
            self._workflow_runner.slots_owner = self._activity_runner
            self._activity_runner.workflows = self._workflow_runner
        self._stop: asyncio.Future[None] | None = None
        self._idle_pollers: set[asyncio.Task[Any]] = set()
        self._background: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Polls until :meth:`shutdown`; then lets running activities finish (up to
        ``graceful_shutdown_timeout``) and returns."""
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        pollers = []
        storage = self.client.storage
        sized = storage if isinstance(storage, SizedByWorkers) else None
        poller_count = (
            max(1, self.config.max_concurrent_workflow_tasks) if self._has_workflows else 0
        ) + (1 if self._has_activities else 0)
        if sized is not None:  # a pool of connections grows to fit this worker's pollers
            sized.worker_started(poller_count)
        gc_threshold = self.config.gc_threshold
        if gc_threshold is not None:
            _collector.hold(gc_threshold)
        if self._has_workflows:
            self._workflow_runner.accepts_eager_starts = True
            self.client._attach_worker(self.task_queue, self._workflow_runner)
            for _ in range(max(1, self.config.max_concurrent_workflow_tasks)):
                pollers.append(
                    loop.create_task(
                        self._poll(
                            self._workflow_runner.poll_once, self.client.storage.wait_for_work
                        )
                    )
                )
        if self._has_activities:
            activities = self._activity_runner
            pollers.append(
                loop.create_task(
                    self._poll(
                        activities.poll_once,
                        functools.partial(activities.wait_for_work, self.client.storage),
                    )
                )
            )
        try:
            await asyncio.gather(*pollers)
        finally:
            if sized is not None:
                sized.worker_stopped(poller_count)
            for poller in pollers:
                poller.cancel()
            self._stop_eager_dispatch()
            await self._workflow_runner.drain()
            await self._drain_activities()
            self._workflow_runner.cache.clear()
            self._activity_runner.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            if gc_threshold is not None:
                _collector.release()

    async def _poll(
        self,
        poll_once: Callable[[], Any],
        wait_for_work: Callable[[str, float], Coroutine[Any, Any, None]],
    ) -> None:
        stop = self._stop
        assert stop is not None
        idle_seconds = self.config.poll_interval.total_seconds()
        me = asyncio.current_task()
        assert me is not None
        while not stop.done():
            try:
                did_work = await poll_once()
            except MainspringError as error:
                # The storage failed (a StorageError: disk, lock, connection). Nothing half-done
                # was committed; wait a poll interval and try again.
                logger.warning("poll failed; retrying in %.1f s: %s", idle_seconds, error)
                await asyncio.sleep(idle_seconds)
                continue
            if did_work:
                # Let the other pollers and running activities have the loop.
                await asyncio.sleep(0)
                continue
            if stop.done():
                # Shutdown came while this poll was on its way: it cancelled the pollers that
                # were idle then, not this one, so this one must not start to wait.
                return
            # Only an idle poller may be cancelled by shutdown: one in the middle of a task
            # finishes it (and its commit) first.
            self._idle_pollers.add(me)
            try:
                await wait_for_work(self.task_queue, idle_seconds)
            except asyncio.CancelledError:
                if stop.done():
                    return
                raise
            except MainspringError as error:
                # The storage failed while this poller waited (a dropped connection): as
                # when a poll fails, wait a poll interval (still idle: shutdown may cancel
                # it) and poll again.
                logger.warning(
                    "waiting for work failed; polling in %.1f s: %s", idle_seconds, error
                )
                try:
                    await asyncio.sleep(idle_seconds)
                except asyncio.CancelledError:
                    if stop.done():
                        return
                    raise
            finally:
                self._idle_pollers.discard(me)
            # Yield even if the storage answered at once, so no poller can starve the others.
            await asyncio.sleep(0)

    async def _drain_activities(self) -> None:
        # Until none runs: a commit on its way at shutdown may still start what it leased.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.graceful_shutdown_timeout.total_seconds()
        while running := set(self._activity_runner.running):
            _, pending = await asyncio.wait(running, timeout=max(0.0, deadline - loop.time()))
            if pending:
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)

    def _stop_eager_dispatch(self) -> None:
        # Work in flight finishes, but chains no new work and takes no new starts.
        self._workflow_runner.activities = None
        self._activity_runner.workflows = None
        self._workflow_runner.accepts_eager_starts = False
        self.client._detach_worker(self.task_queue, self._workflow_runner)

    def stats(self) -> WorkerStats:
        """What the worker's slots and cache hold now (cheap: counters it keeps anyway)."""
        activities = self._activity_runner
        cache = self._workflow_runner.cache
        used = activities.slots_used
        return WorkerStats(
            activity_task_slots_used=used,
            activity_task_slots_available=activities.free_slots(),
            activity_slot_seconds=activities.slot_seconds(),
            activity_attempts_started=activities.attempts_started,
            activity_attempts_reporting=max(0, len(activities.running) - used),
            workflow_eager_starts_running=self._workflow_runner.eager_starts_running,
            workflow_completed=self._workflow_runner.workflows_closed,
            sticky_cache_size=len(cache),
            sticky_cache_bytes=cache.bytes,
            sticky_cache_hit=cache.hits,
            sticky_cache_miss=cache.misses,
            sticky_cache_total_forced_eviction=cache.evictions,
        )

    def shutdown(self) -> None:
        """Asks :meth:`run` to stop polling and return."""
        self._stop_eager_dispatch()
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)
            for poller in list(self._idle_pollers):
                poller.cancel()

    async def __aenter__(self) -> Worker:
        self._background = asyncio.get_running_loop().create_task(self.run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()
        if self._background is not None:
            await self._background
