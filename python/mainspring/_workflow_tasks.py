"""The worker's workflow side: leases workflow tasks, advances cached (or replayed) instances,
commits their outcomes, and answers queries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import _core
from ._definitions import WorkflowDefinition
from ._failure import failure_from_exception
from ._instance import WorkflowInstance
from ._workflow_cache import WorkflowCache
from .errors import (
    MainspringError,
    NonDeterminismError,
    QueryFailedError,
    StaleTaskError,
    StorageError,
    UnknownWorkflowTypeError,
    WorkflowTaskFailedError,
)
from .storage.base import (
    ActivityTask,
    CommittedTask,
    QueryTask,
    Storage,
    WorkflowTask,
    fused_commits,
)

if TYPE_CHECKING:
    from ._activity_tasks import ActivityTaskRunner
    from .worker import WorkerConfig

logger = logging.getLogger("mainspring.worker")

# A query that came before its run's first workflow task completed waits for that task; when
# another worker runs it, this worker looks again every poll interval, and answers with an
# error after this long (longer than any client waits by default).
DEFERRED_QUERY_LIMIT_SECONDS = 60.0

# Workflow tasks a poll takes while the worker's activities are backed up (_poll_batch).
SATURATED_POLL_BATCH = 8

#: How a workflow task's commit that the storage failed is tried again (see
#: `WorkflowTaskRunner._commit_retrying`): this many tries, pauses doubling from the first to
#: the most.
COMMIT_TRIES = 6
COMMIT_RETRY_INITIAL_SECONDS = 0.05
COMMIT_RETRY_MAXIMUM_SECONDS = 2.0


def advance(instance: WorkflowInstance, now_ms: int, allow_live: bool = True) -> bytes | None:
    """Feeds every pending activation through the instance. Returns the encoded outcome of the
    live activation, if there was one (it is always the last)."""
    run = instance.run
    instance.activities_scheduled = 0  # set by a live activation, if there is one
    with instance.loop.running():
        while (activation := run.next_activation(now_ms, allow_live)) is not None:
            outcome = run.complete(instance.activate(activation))
            if outcome is not None:
                return outcome
    return None


def _run_ahead(
    instance: WorkflowInstance, committed: bytes | None, row: bytes, now_ms: int
) -> bytes | None:
    """Feeds an instance the events its last commit appended (if it has not seen them) and
    an event row nothing has recorded yet, and runs its live activation, for a commit that
    records both (fused start or result). None if that cannot be done: the ordinary path then
    runs the task and reports whatever went wrong, replaying from the history."""
    instance.deferred_logs = ()  # what it logs counts only if the commit lands
    try:
        instance.run.add_events_then_row(committed, row)
        return advance(instance, now_ms)
    except Exception:
        instance.release_logs(emit=False)
        return None


class WorkflowTaskRunner:
    def __init__(
        self,
        storage: Storage,
        task_queue: str,
        definitions: dict[str, WorkflowDefinition],
        config: WorkerConfig,
    ) -> None:
        self._storage = storage
        # Declared once: the worker's fused paths run only on storages that offer them.
        self._fused = fused_commits(storage)
        self._task_queue = task_queue
        self._definitions = definitions
        self._config = config
        self._lease_ms = int(config.workflow_task_timeout.total_seconds() * 1000)
        self._failure_types = tuple(config.workflow_failure_exception_types)
        self._cache = WorkflowCache(config.max_cached_workflows, config.max_cached_history_bytes)
        # Queries that arrived before the run's first workflow task completed: its handlers
        # are not registered yet, so they wait for that task (as Temporal's do), with the
        # time.monotonic() they were first deferred at.
        self._deferred_queries: dict[str, list[tuple[QueryTask, float]]] = {}
        self._deferred_checked = time.monotonic()
        # Set by the worker when it also runs activities: attempts a commit leased eagerly
        # start at once on this worker (see Storage.complete_workflow_task).
        self.activities: ActivityTaskRunner | None = None
        # The runner whose slots eager commits take (kept when shutdown stops eager dispatch:
        # a commit already on its way still leases into them, and what it leased must run).
        self.slots_owner: ActivityTaskRunner | None = None
        # First workflow tasks handed over by starts in this process, being advanced.
        self._eager_starts: set[asyncio.Task[None]] = set()
        self.workflows_closed = 0  # runs this worker's commits closed
        self._fused_starts = 0  # starts advancing their first task inline (start_and_advance)
        self.accepts_eager_starts = False

    @property
    def lease_ms(self) -> int:
        return self._lease_ms

    def takes_eager_start(self) -> bool:
        # Bounded like a poll batch: past it, starts queue their task for the pollers.
        return (
            self.accepts_eager_starts and len(self._eager_starts) < self._config.workflow_task_batch
        )

    async def start_and_advance(
        self, workflow_id: str, run_id: str, workflow_type: str, task_queue: str, input: bytes
    ) -> bool:
        """Starts a run and advances its first workflow task in one commit (storages that
        fuse commits): a new instance is fed its WorkflowStarted event and run before anything
        is recorded. Returns False, having recorded nothing, when this cannot be done (the
        storage cannot fuse, the type is unknown here, the task failed); the caller then
        starts the run the ordinary way, and a failure is reported there."""
        storage = self._fused
        if (
            storage is None
            or not self.accepts_eager_starts
            or workflow_type not in self._definitions
            # Run inline by the caller, so bounded only by what the cache keeps.
            or self._fused_starts >= self._config.max_cached_workflows
        ):
            return False
        instance = self._new_instance(workflow_type)
        now = self._storage.now_ms()
        started_event = _core.encode_inbound_row(
            1, now, "WorkflowStarted", (workflow_type, workflow_id, run_id, task_queue, input)
        )
        outcome = _run_ahead(instance, None, started_event, now)
        if outcome is None:
            return False
        self._fused_starts += 1
        try:
            committed = await storage.start_workflow_with_first_task(
                workflow_id,
                run_id,
                workflow_type,
                task_queue,
                input,
                started_event,
                outcome,
                **self._eager_room(instance),
            )
        except BaseException:
            instance.release_logs(emit=False)
            raise
        finally:
            self._fused_starts -= 1
            self._commit_returned()
        instance.release_logs(emit=True)
        self._committed(run_id, instance, committed)
        return True

    def start_eagerly(self, task: WorkflowTask) -> None:
        """Advances, in the background, a first workflow task a start leased to us."""
        background = asyncio.get_running_loop().create_task(self._advance_started(task))
        self._eager_starts.add(background)
        background.add_done_callback(self._eager_starts.discard)

    async def _advance_started(self, task: WorkflowTask) -> None:
        try:
            await self.process_leased(task)
        except MainspringError as error:
            # The storage failed: the lease lapses and a poll hands the task out again.
            logger.warning("workflow task of %s failed: %s", task.workflow_id, error)

    async def drain(self) -> None:
        """Waits for the eagerly started tasks in flight (their commits included)."""
        if self._eager_starts:
            await asyncio.wait(set(self._eager_starts))

    @property
    def cache(self) -> WorkflowCache:
        return self._cache

    @property
    def eager_starts_running(self) -> int:
        return len(self._eager_starts) + self._fused_starts

    async def poll_once(self) -> bool:
        """Handles ready queries and up to ``workflow_task_batch`` workflow tasks back to back
        (one batch, then the loop is yielded); returns whether it did anything."""
        did_something = False
        storage = self._storage
        while (query := await storage.poll_query(self._task_queue)) is not None:
            await self._answer_query(query)
            did_something = True
        tasks = await storage.poll_workflow_tasks(
            self._task_queue, self._lease_ms, self._poll_batch()
        )
        if self._deferred_queries:
            # Also on an idle worker: another worker may have run the run's first task.
            await self._look_again_at_deferred()
        if not tasks:
            return did_something
        if len(tasks) > 1 and storage.capabilities.groups_commits:
            # Concurrently, so the storage commits their outcomes together.
            await asyncio.gather(*(self._process(task) for task in tasks))
        else:
            for task in tasks:
                await self._process(task)
        if self._deferred_queries:
            for task in tasks:
                await self._answer_deferred(task.run_id)
        return True

    def _poll_batch(self) -> int:
        """How many workflow tasks one poll takes: a batch, or a few while more attempts
        that this worker's tasks scheduled wait in the store than its slots can run. Taking
        more then only queues more activities behind them: a backlog of new runs would have
        every first task taken before most runs finish, and the cache churn through them all.
        A few keep tasks of every kind (signals, timers) moving meanwhile."""
        batch = self._config.workflow_task_batch
        activities = self.activities
        if activities is not None and activities.queued > activities.capacity:
            return min(batch, SATURATED_POLL_BATCH)
        return batch

    async def process_leased(self, task: WorkflowTask) -> None:
        """Advances a workflow task this worker was handed without polling (eager dispatch)."""
        await self._process(task)
        if self._deferred_queries:
            await self._answer_deferred(task.run_id)

    def _new_instance(self, workflow_type: str) -> WorkflowInstance:
        definition = self._definitions.get(workflow_type)
        if definition is None:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise UnknownWorkflowTypeError(
                f"workflow type {workflow_type!r} is not registered on this worker "
                f"(registered: {known})"
            )
        return WorkflowInstance(
            definition,
            self._config.maximum_payload_bytes,
            failure_exception_types=self._failure_types,
        )

    async def _process(self, task: WorkflowTask) -> None:
        storage = self._storage
        instance = self._cache.take(task.run_id)
        try:
            if instance is None:
                instance = self._new_instance(task.workflow_type)
            known = instance.run.history_length
            if task.history_tail is not None and task.tail_from == known + 1:
                tail = task.history_tail  # the poll brought exactly what this instance lacks
            else:
                tail = await storage.read_history(task.workflow_id, task.run_id, known + 1)
            instance.run.add_events(tail)
            try:
                outcome = advance(instance, storage.now_ms())
            except NonDeterminismError as divergence:
                if not instance.fails_run_on(divergence):
                    raise
                # Listed by the workflow or worker as a run failure (temporalio allows it).
                logger.warning("workflow %s failed: %s", task.workflow_id, divergence)
                outcome = instance.run.fail_run(
                    storage.now_ms(), failure_from_exception(divergence)
                )
        except Exception as error:
            if isinstance(error, WorkflowTaskFailedError):
                # The workflow's own exception (not a FailureError): its traceback is the
                # cause's, and the reason recorded is the exception itself.
                reason = str(error)
            else:
                reason = f"{type(error).__name__}: {error}"
            logger.warning(
                "workflow task of %s failed; it will be retried: %s",
                task.workflow_id,
                reason,
                exc_info=not isinstance(error, UnknownWorkflowTypeError),
            )
            if instance is not None:
                instance.dispose()
            with contextlib.suppress(StaleTaskError):
                await storage.fail_workflow_task(task, reason)
            return
        try:
            committed = await self._commit_retrying(
                task,
                lambda: storage.complete_workflow_task(task, outcome, **self._eager_room(instance)),
            )
        except StaleTaskError:
            # Our lease expired and another worker owns the run now: drop our copy.
            logger.info("workflow task of %s lost its lease; dropped", task.workflow_id)
            instance.dispose()
            return
        finally:
            self._commit_returned()
        self._committed(task.run_id, instance, committed)

    async def _commit_retrying(
        self, task: WorkflowTask, commit: Callable[[], Awaitable[CommittedTask]]
    ) -> CommittedTask:
        """Commits, trying again with a growing pause when the storage fails (a dropped
        connection, a server restarting) rather than leaving the task to its lease. Every
        write is fenced, so a retry never records twice: if a commit whose outcome was
        unknown had in fact committed, the retry finds the lease over (StaleTaskError) and
        the instance is dropped, to be rebuilt from what the history holds."""
        delay = COMMIT_RETRY_INITIAL_SECONDS
        for attempt in range(1, COMMIT_TRIES + 1):
            try:
                return await commit()
            except StorageError as error:
                if attempt == COMMIT_TRIES:
                    raise
                logger.warning(
                    "committing the workflow task of %s failed (try %d of %d, again in %.2f s): %s",
                    task.workflow_id,
                    attempt,
                    COMMIT_TRIES,
                    delay,
                    error,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, COMMIT_RETRY_MAXIMUM_SECONDS)
        raise AssertionError("unreachable")

    def _eager_room(self, instance: WorkflowInstance) -> dict[str, Any]:
        """The commit options that let it lease the activities it schedules to this worker:
        as many as the instance's last task scheduled on this queue, each into a slot the
        storage takes from this worker's pool as the commit runs (commits run concurrently:
        none leases into a slot another took). A leased attempt keeps its slot and runs in
        it; the rest go back as the commit runs."""
        activities = self.activities
        wanted = instance.activities_scheduled
        if activities is None or wanted <= 0:
            return {}
        return {
            "eager_activity_queue": self._task_queue,
            "eager_activity_slots": wanted,
            "eager_slots": activities.pool,
        }

    def _commit_returned(self) -> None:
        # The slots the commit took and did not lease into are free again (the storage gave
        # them back as it ran): the activity poller may be waiting for one.
        activities = self.activities
        if activities is not None:
            activities.slots_returned()

    def _committed(self, run_id: str, instance: WorkflowInstance, committed: CommittedTask) -> None:
        """After a commit: starts the attempts it leased to us, and caches the instance with
        what the commit appended."""
        activities = self.activities or self.slots_owner
        if activities is not None:
            if committed.activities:
                activities.start(committed.activities)
            activities.queued += instance.activities_scheduled - len(committed.activities)
        if instance.run.is_closed:
            self.workflows_closed += 1
            instance.dispose()
        else:
            instance.committed_length = committed.history_length
            instance.appended = committed.appended
            self._cache.put(run_id, instance)

    async def complete_activity_and_advance(self, task: ActivityTask, result: bytes) -> bool:
        """Records an activity's result and advances the workflow task it wakes in one commit
        (storages that can fuse them): the cached instance is fed the result first, and the
        commit is guarded by the history length it has seen. Returns False, having changed
        nothing, when this cannot be done (no cached instance, the storage cannot fuse); the
        caller then records the result the ordinary way."""
        storage = self._fused
        instance = self._cache.peek(task.run_id)
        if (
            storage is None
            or instance is None
            or instance.committed_length is None
            or instance.appended is None
        ):
            return False
        # Ours from here: it runs ahead of the stored history until the commit says otherwise.
        self._cache.take(task.run_id)
        length = instance.committed_length
        now = self._storage.now_ms()
        result_event = _core.encode_inbound_row(
            length + 1, now, "ActivityCompleted", (task.scheduled_event_id, result, task.attempt)
        )
        outcome = _run_ahead(instance, instance.appended, result_event, now)
        if outcome is None:
            instance.dispose()  # the ordinary path replays the run afresh
            return False
        try:
            committed = await storage.complete_activity_with_workflow_task(
                task, result, result_event, length, outcome, **self._eager_room(instance)
            )
        except StaleTaskError:
            instance.release_logs(emit=False)
            logger.info(
                "activity %s finished after its attempt ended; result dropped", task.activity_type
            )
            instance.dispose()
            return True
        except BaseException:
            instance.release_logs(emit=False)
            raise
        finally:
            self._commit_returned()
        instance.release_logs(emit=committed is not None)
        if committed is not None:
            self._committed(task.run_id, instance, committed)
        else:
            # The run moved on while the activity ran: the result went in alone and queued
            # the run's task, which a poll hands out (this instance ran ahead: dropped).
            instance.dispose()
        return True

    async def _answer_query(self, query: QueryTask, deferred_at: float | None = None) -> None:
        storage = self._storage
        try:
            instance = await self._instance_for_query(query)
            if instance is None:
                await self._defer_query(query, deferred_at)
                return
            try:
                result = instance.handle_query(query.query_name, query.input)
            finally:
                # Kept for the next task or query unless the query changed it (then dropped)
                # or a task cached a newer one meanwhile.
                if (
                    not instance.tainted
                    and not instance.run.is_closed
                    and query.run_id not in self._cache
                ):
                    self._cache.put(query.run_id, instance)
                else:
                    instance.dispose()
        except Exception as error:
            message = str(error) if isinstance(error, QueryFailedError) else repr(error)
            await storage.answer_query(query, None, message)
            return
        await storage.answer_query(query, result, None)

    async def _instance_for_query(self, query: QueryTask) -> WorkflowInstance | None:
        """The run's instance brought to the state its last completed workflow task left
        (taken out of the cache meanwhile): the cached one fed only the events it has not
        seen, else one rebuilt by replay. None before the first task has completed."""
        storage = self._storage
        instance = self._cache.take(query.run_id)
        if instance is None:
            description = await storage.describe_workflow(query.workflow_id)
            instance = self._new_instance(description.workflow_type)
        elif instance.appended is not None:
            # Its own last commit, which it has not been fed yet.
            instance.run.add_events(instance.appended)
        # Whatever it was fed here, the fused path (which feeds `appended`) is off for it.
        instance.committed_length = None
        instance.appended = None
        tail = await storage.read_history(
            query.workflow_id, query.run_id, instance.run.history_length + 1
        )
        instance.run.add_events(tail)
        advance(instance, storage.now_ms(), allow_live=False)
        if instance.info is None:
            return None
        return instance

    async def _defer_query(self, query: QueryTask, deferred_at: float | None) -> None:
        now = time.monotonic()
        if deferred_at is None:
            deferred_at = now
        elif now - deferred_at > DEFERRED_QUERY_LIMIT_SECONDS:
            await self._storage.answer_query(
                query,
                None,
                f"workflow {query.workflow_id} has not completed its first workflow task "
                f"in {DEFERRED_QUERY_LIMIT_SECONDS:.0f} s",
            )
            return
        self._deferred_queries.setdefault(query.run_id, []).append((query, deferred_at))

    async def _answer_deferred(self, run_id: str) -> None:
        for query, deferred_at in self._deferred_queries.pop(run_id, ()):
            await self._answer_query(query, deferred_at)

    async def _look_again_at_deferred(self) -> None:
        """Deferred queries whose run's first task another worker may have completed: looked
        at again once a poll interval (each is answered, deferred again, or given up)."""
        now = time.monotonic()
        if now - self._deferred_checked < self._config.poll_interval.total_seconds():
            return
        self._deferred_checked = now
        for run_id in list(self._deferred_queries):
            await self._answer_deferred(run_id)
