"""One live workflow instance: applies an activation's jobs, runs the workflow code on its
deterministic loop until every coroutine is blocked, and collects the commands it issued.

The worker keeps instances cached between workflow tasks (sticky execution); a cache miss
rebuilds one by replaying history through the same path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _core, _payload
from ._definitions import WorkflowDefinition
from ._failure import exception_from_failure, failure_from_exception
from ._loop import new_workflow_loop
from ._protocol import (
    COMMAND_CANCEL_TIMER,
    COMMAND_CANCEL_WORKFLOW,
    COMMAND_COMPLETE_WORKFLOW,
    COMMAND_FAIL_WORKFLOW,
    COMMAND_REQUEST_CANCEL_ACTIVITY,
    COMMAND_SCHEDULE_ACTIVITY,
    COMMAND_START_TIMER,
    JOB_CANCEL_WORKFLOW,
    JOB_FIRE_TIMER,
    JOB_RESOLVE_ACTIVITY,
    JOB_SIGNAL,
    JOB_START_WORKFLOW,
    RESOLUTION_CANCELED,
    RESOLUTION_COMPLETED,
    RESOLUTION_FAILED,
)
from .errors import (
    ActivityError,
    ApplicationError,
    FailureError,
    PayloadDecodeError,
    QueryFailedError,
    WorkflowEscapeError,
    WorkflowTaskFailedError,
)

logger = logging.getLogger("mainspring.workflow")

# Engine flags (rust/core/src/history/flags.rs): which behaviours an activation runs with.
FLAG_TASK_FAILURES = _core.FLAG_TASK_FAILURES
FLAG_STAGED_JOBS = _core.FLAG_STAGED_JOBS


@dataclass(frozen=True)
class WorkflowInfo:
    """Facts about the running workflow, the same on every replay."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str


# A scheduled activity awaiting its result: (future, activity_type, output_type, command,
# decode). A plain tuple, not a class: one is made per activity on the replay hot path.
_PendingActivity = tuple["asyncio.Future[Any]", str, Any, tuple[Any, ...], Callable[[bytes], Any]]


@dataclass
class _PendingTimer:
    future: asyncio.Future[None]
    command: tuple[Any, ...]


# What asyncio raises into code that awaits a future of another loop: the first time, that it
# is attached to a different loop; every later time (the future stays flagged as awaited),
# that await was not used with it. Both are escapes, not workflow failures.
_FOREIGN_FUTURE = ("attached to a different loop", "await wasn't used with future")


class WorkflowInstance:
    # Rarely changed state, as class defaults (an instance is made per run on every cache miss).
    flags = 0
    task_error: BaseException | None = None
    dropped_signals = 0
    # Set when a query changed state it cannot put back: the worker drops this instance.
    tainted = False
    # Activities the last live activation scheduled.
    activities_scheduled = 0
    # While the worker runs this instance ahead of its stored history (a fused commit), log
    # records wait here: they are emitted if that commit lands, dropped if it does not (the
    # task then runs again and logs them itself).
    # (`()`: deferring, nothing logged yet, which the worker sets as it runs ahead; a list once
    # something is.)
    deferred_logs: list[tuple[logging.Logger, int, object, Any, Any]] | tuple[()] | None = None

    def __init__(
        self,
        definition: WorkflowDefinition,
        payload_limit: int,
        run: _core.WorkflowRun | None = None,
        failure_exception_types: tuple[type[BaseException], ...] = (),
    ) -> None:
        from .workflow_context import (
            WorkflowContext,
        )  # the context is the public face of the instance

        self.definition = definition
        self.payload_limit = payload_limit
        self.run = run if run is not None else _core.WorkflowRun()
        self.loop = new_workflow_loop()
        self.commands: list[tuple[Any, ...]] = []
        self.activities: dict[int, _PendingActivity] = {}
        self.timers: dict[int, _PendingTimer] = {}
        self.next_activity_seq = 1
        self.next_timer_seq = 1
        self.signal_buffers: dict[str, collections.deque[bytes]] = {}
        # Coroutines in wait_signal, per signal name, first come first served: each signal
        # goes to exactly one of them.
        self.signal_waiters: dict[str, collections.deque[asyncio.Future[bytes]]] = {}
        # Exceptions that fail the run (besides FailureError): the workflow's and the worker's.
        own = definition.failure_exception_types
        self.failure_types = (*own, *failure_exception_types) if own else failure_exception_types
        self.signal_handlers: dict[str, tuple[Any, Callable[[Any], Any]]] = {}
        self.query_handlers: dict[str, tuple[Any, Callable[[Any], Any]]] = {}
        self.conditions: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.replaying = False
        self.now_ms = 0
        self.info: WorkflowInfo | None = None
        self._random: random.Random | None = None
        self.main_task: asyncio.Task[Any] | None = None
        self.task_queue = ""
        self.closed = False
        self.cancel_requested = False
        self.handler_error: BaseException | None = None
        # After a commit, where the storage reported them: the run's history length and the
        # events that commit appended (this instance's own), which it has not been fed yet.
        self.committed_length: int | None = None
        self.appended: bytes | None = None
        self.context = WorkflowContext(self)

    @property
    def random(self) -> random.Random:
        """Seeded from the run id, so ctx.random()/uuid4() repeat on replay and differ per
        run. Made on first use: seeding hashes the id, which most workflows never need."""
        if self._random is None:
            self._random = random.Random(self.info.run_id if self.info else "")
        return self._random

    # Activations.

    def activate(self, activation: tuple[bool, int, list[tuple[Any, ...]], int]) -> list[Any]:
        """Applies one activation and returns the commands the workflow code issued.

        Raises:
            WorkflowTaskFailedError: the code raised something that fails the task, not the run.
        """
        replaying, now_ms, jobs, flags = activation
        self.replaying = replaying
        self.now_ms = now_ms
        self.flags = flags
        if jobs and jobs[0][0] == JOB_SIGNAL and flags & FLAG_STAGED_JOBS:
            jobs = self._apply_signals_first(jobs)
        # The hot path of replay: one loop over the jobs, inline.
        for job in jobs:
            tag = job[0]
            if tag == JOB_RESOLVE_ACTIVITY:
                self._resolve_activity(job)
            elif tag == JOB_FIRE_TIMER:
                timer = self.timers.pop(job[1], None)
                if timer is not None and not timer.future.done():
                    timer.future.set_result(None)
            elif tag == JOB_SIGNAL:
                self._deliver_signal(job[1], job[2])
            elif tag == JOB_START_WORKFLOW:
                self._start(job)
            elif tag == JOB_CANCEL_WORKFLOW:
                self.cancel_requested = True
                if self.main_task is not None:
                    self.main_task.cancel()
        self._run()
        if self.loop.escape is not None:
            raise WorkflowEscapeError(self.loop.escape)
        if self.task_error is not None:
            error, self.task_error = self.task_error, None
            raise WorkflowTaskFailedError(f"{type(error).__name__}: {error}") from error
        commands = self.commands
        self.commands = []
        if not replaying:
            # What a commit of these may lease to this worker (see _eager_room).
            # (Only those on the run's own queue: the worker's, the only ones leased to it.)
            own_queue = self.task_queue
            self.activities_scheduled = sum(
                1
                for command in commands
                if command[0] == COMMAND_SCHEDULE_ACTIVITY and command[4] == own_queue
            )
        return commands

    def _apply_signals_first(self, jobs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Stage one of a staged activation, as temporalio's: the signals (the core puts them
        first) are delivered and the loop runs to idle with conditions checked, so a signal
        recorded before a timer fired is seen before it. Returns the jobs left for stage two
        (none once the run closed)."""
        first_other = 1
        while first_other < len(jobs) and jobs[first_other][0] == JOB_SIGNAL:
            first_other += 1
        for job in jobs[:first_other]:
            self._deliver_signal(job[1], job[2])
        self._run()
        return [] if self.closed else jobs[first_other:]

    def fails_run_on(self, error: BaseException) -> bool:
        """Whether the workflow or worker lists ``error``'s type among run failures."""
        return bool(self.failure_types) and isinstance(error, self.failure_types)

    def fails_run(self, error: BaseException) -> bool:
        """Whether ``error``, raised by workflow code, fails the run (else the task)."""
        if not self.flags & FLAG_TASK_FAILURES:
            return True  # recorded before the rule: any exception failed the run
        return isinstance(error, FailureError) or self.fails_run_on(error)

    def _run(self) -> None:
        loop = self.loop
        now_seconds = self.now_ms / 1000.0
        while True:
            loop.run_until_idle(now_seconds)
            if loop.cancellation_requested:
                self._sweep_cancelled()
            # (Inline checks: this runs once or more per activation, the hot path of replay.)
            if (not self.conditions or not self._check_conditions()) and not loop._ready:
                break
        # The future execute_activity returns may be cancelled directly (from the pending set
        # of asyncio.wait, say), which flags nothing: look once the loop is idle, before the
        # run can close. (A subclass of Future whose cancel flagged the loop would cost every
        # await its fast path in asyncio's C task.)
        for pending in self.activities.values():
            if pending[0].cancelled():
                self._sweep_cancelled()
                break
        task = self.main_task
        if task is not None and task.done() and not self.closed and self.task_error is None:
            self._finish(task)

    def _check_conditions(self) -> bool:
        if not self.conditions:
            return False
        progressed = False
        remaining = []
        for predicate, future in self.conditions:
            if future.done():
                continue
            try:
                satisfied = predicate()
            except Exception as error:
                future.set_exception(error)
                progressed = True
                continue
            if satisfied:
                future.set_result(None)
                progressed = True
            else:
                remaining.append((predicate, future))
        self.conditions = remaining
        return progressed

    def _start(self, job: tuple[Any, ...]) -> None:
        _, workflow_type, workflow_id, run_id, task_queue, input_bytes = job
        self.info = WorkflowInfo(workflow_id, run_id, workflow_type, task_queue)
        self.task_queue = task_queue
        self.main_task = self.loop.create_main_task(self._main(input_bytes), workflow_type)

    async def _main(self, input_bytes: bytes) -> Any:
        definition = self.definition
        if not definition.takes_input:
            return await definition.function(self.context)
        try:
            argument = _payload.decode(input_bytes, definition.input_type)
        except PayloadDecodeError as error:
            # The caller's input, not the workflow's code: no redeploy makes this run's input
            # decode, so it fails the run (recorded as the PayloadDecodeError it is).
            raise ApplicationError(str(error), type=type(error).__name__) from error
        return await definition.function(self.context, argument)

    def _finish(self, task: asyncio.Task[Any]) -> None:
        self.closed = True
        if self.handler_error is not None:
            self.commands.append(
                (COMMAND_FAIL_WORKFLOW, failure_from_exception(self.handler_error))
            )
            return
        if task.cancelled():
            self.commands.append((COMMAND_CANCEL_WORKFLOW, _payload.EMPTY))
            return
        error = task.exception()
        if error is None:
            try:
                result = _payload.encode(task.result(), self.payload_limit)
            except Exception as encode_error:
                if not self.fails_run(encode_error):
                    self.closed = False
                    self.task_error = encode_error
                    return
                self.commands.append((COMMAND_FAIL_WORKFLOW, failure_from_exception(encode_error)))
                return
            self.commands.append((COMMAND_COMPLETE_WORKFLOW, result))
            return
        if isinstance(error, WorkflowEscapeError):
            self.closed = False
            raise WorkflowEscapeError(f"[MS1200] workflow code escaped its event loop: {error}")
        if isinstance(error, RuntimeError) and any(text in str(error) for text in _FOREIGN_FUTURE):
            self.closed = False
            raise WorkflowEscapeError(
                "[MS1200] workflow code escaped its event loop: it awaited a future attached to "
                "a different loop (one made outside the workflow); wait through ctx or an "
                f"activity instead ({error})"
            )
        if isinstance(error, asyncio.CancelledError) and self.cancel_requested:
            self.commands.append((COMMAND_CANCEL_WORKFLOW, _payload.EMPTY))
            return
        if not self.fails_run(error):
            self.closed = False
            self.task_error = error
            return
        self.commands.append((COMMAND_FAIL_WORKFLOW, failure_from_exception(error)))

    # Activities.

    def schedule_activity(
        self,
        activity_type: str,
        input_bytes: bytes,
        task_queue: str,
        options: tuple[Any, ...],
        output_type: Any,
        decode: Callable[[bytes], Any],
    ) -> asyncio.Future[Any]:
        seq = self.next_activity_seq
        self.next_activity_seq = seq + 1
        command = (COMMAND_SCHEDULE_ACTIVITY, seq, activity_type, input_bytes, task_queue, *options)
        self.commands.append(command)
        future: asyncio.Future[Any] = asyncio.Future(loop=self.loop)
        self.activities[seq] = (
            future,
            activity_type,
            output_type,
            command,
            decode,
        )
        return future

    def _sweep_cancelled(self) -> None:
        """Turns futures that workflow code cancelled into cancel commands.

        Checked after the loop drains, and only when something was cancelled (the loop's tasks
        and our handles flag it), instead of a done-callback on every future: resolving a
        future is the hot path of replay and should schedule nothing extra.
        """
        self.loop.cancellation_requested = False
        for seq in [seq for seq, pending in self.activities.items() if pending[0].cancelled()]:
            command = self.activities.pop(seq)[3]
            if not self._withdraw(command):
                self.commands.append((COMMAND_REQUEST_CANCEL_ACTIVITY, seq))
        for seq in [seq for seq, timer in self.timers.items() if timer.future.cancelled()]:
            timer = self.timers.pop(seq)
            if not self._withdraw(timer.command):
                self.commands.append((COMMAND_CANCEL_TIMER, seq))

    def _withdraw(self, command: tuple[Any, ...]) -> bool:
        """Drops a command not yet sent (cancelled in the activation that issued it)."""
        for index, queued in enumerate(self.commands):
            if queued is command:
                del self.commands[index]
                return True
        return False

    def _resolve_activity(self, job: tuple[Any, ...]) -> None:
        _, seq, attempt, kind, detail, timeout_type = job
        pending = self.activities.pop(seq, None)
        if pending is None:
            return
        future, name, output_type, _, decode = pending
        if future.done():
            return
        if kind == RESOLUTION_COMPLETED:
            try:
                value = decode(detail)
            except Exception:
                try:  # the slow path, for a typed error that names the expected type
                    value = _payload.decode(detail, output_type)
                except Exception as error:
                    future.set_exception(error)
                    return
            future.set_result(value)
            return
        if kind == RESOLUTION_FAILED:
            message = f"activity {name} failed"
        elif kind == RESOLUTION_CANCELED:
            message = f"activity {name} was cancelled"
        else:
            message = f"activity {name} timed out ({timeout_type})"
        activity_error = ActivityError(
            message,
            activity_type=name,
            attempt=attempt,
            timeout_type=timeout_type,
        )
        if kind == RESOLUTION_CANCELED:
            activity_error.__cause__ = asyncio.CancelledError()
        elif detail is not None:
            activity_error.__cause__ = exception_from_failure(detail)
        future.set_exception(activity_error)

    # Timers.

    def start_timer(self, duration_ms: int) -> asyncio.Future[None]:
        seq = self.next_timer_seq
        self.next_timer_seq += 1
        command = (COMMAND_START_TIMER, seq, duration_ms)
        self.commands.append(command)
        future: asyncio.Future[None] = asyncio.Future(loop=self.loop)
        self.timers[seq] = _PendingTimer(future, command)
        return future

    # Signals and queries.

    def _deliver_signal(self, name: str, payload: bytes) -> None:
        handler = self.signal_handlers.get(name)
        if handler is not None:
            self.loop.call_soon(self._invoke_signal_handler, handler, payload)
            return
        if self.flags & FLAG_STAGED_JOBS:
            # Straight to the first waiter in wait_signal (before STAGED_JOBS, waiters found
            # signals in the buffer when conditions were checked: replays do the same).
            waiters = self.signal_waiters.get(name)
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(payload)
                    return
        self.signal_buffers.setdefault(name, collections.deque()).append(payload)

    def take_signal(self, name: str) -> bytes | asyncio.Future[bytes]:
        """The next signal of ``name`` for one wait_signal: a buffered payload if one is there
        and nobody waits before us, else a future in the queue of waiters."""
        buffered = self.signal_buffers.get(name)
        waiters = self.signal_waiters.setdefault(name, collections.deque())
        if buffered and not waiters:
            return buffered.popleft()
        waiter: asyncio.Future[bytes] = self.loop.create_future()
        waiters.append(waiter)
        return waiter

    def log(
        self, target: logging.Logger, level: int, message: object, *args: Any, **kwargs: Any
    ) -> None:
        """Logs for workflow code: never while replaying, and held back while running ahead."""
        if self.replaying or not target.isEnabledFor(level):
            return
        info = self.info
        if info is not None:
            kwargs.setdefault("extra", {}).update(workflow_id=info.workflow_id, run_id=info.run_id)
        deferred = self.deferred_logs
        if deferred is not None:
            if not isinstance(deferred, list):
                deferred = self.deferred_logs = []
            deferred.append((target, level, message, args, kwargs))
            return
        target.log(level, message, *args, **kwargs)

    def dispose(self) -> None:
        """Drops everything the instance holds, once the worker is done with it (its run
        closed, or it was evicted from the cache): the instance and its context refer to each
        other (and the context's logger to the instance), so without this a dropped instance
        is freed only by the cyclic garbage collector, whose backlog is what a busy worker's
        memory grows by. An evicted instance's suspended coroutine still holds what it
        awaits: it is closed here (as the collector would close it, later), its ``finally``
        blocks running with what they log dropped and what they command discarded."""
        task = self.main_task
        if task is not None and not task.done():
            self.deferred_logs = ()
            # On its own loop, as it ran: cleanup code sees the workflow's loop, not the
            # worker's. The workflow's other tasks (a signal handler's, a gather's) too.
            loop = self.loop
            with loop.running():
                for pending in [task, *(loop.tasks or ())]:
                    if pending.done():
                        continue
                    with contextlib.suppress(BaseException):
                        pending.get_coro().close()
                    # A closed coroutine's task stays pending on the future it awaited, whose
                    # callback is the task: a cycle for the collector, one per evicted
                    # instance. Cancelled, the future hands that callback to this loop, which
                    # never runs again: its queue is dropped below.
                    waiter = getattr(pending, "_fut_waiter", None)
                    if waiter is not None:
                        waiter.cancel()
                    # Freed pending, it would report "destroyed but pending" to this loop,
                    # which keeps what it is told (the task with it): another cycle.
                    pending._log_destroy_pending = False
            loop.drop_ready()
        self.__dict__.clear()

    def release_logs(self, emit: bool) -> None:
        """Ends a run-ahead: its records are emitted (its commit landed) or dropped."""
        records, self.deferred_logs = self.deferred_logs, None
        if emit and records:
            for target, level, message, args, kwargs in records:
                target.log(level, message, *args, **kwargs)

    def give_back_signal(self, name: str, taken: asyncio.Future[bytes]) -> None:
        """A waiter gave up (timed out, or was cancelled): it leaves the queue, and a signal it
        was handed goes to the next waiter or back to the front of the buffer, never lost."""
        waiters = self.signal_waiters.get(name)
        if waiters is not None and taken in waiters:
            waiters.remove(taken)
        if not taken.done() or taken.cancelled():
            taken.cancel()
            return
        payload = taken.result()
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(payload)
                return
        self.signal_buffers.setdefault(name, collections.deque()).appendleft(payload)

    def drop_signal(self, name: str, error: BaseException) -> bool:
        """A signal whose payload does not decode: logged (once live) and dropped, never fatal
        to the run. False when the history predates the rule and the run must fail on it."""
        if not self.flags & FLAG_TASK_FAILURES:
            return False
        self.dropped_signals += 1
        if not self.replaying:
            self.run.note_dropped_signal()  # recorded on this task's boundary
        info = self.info
        self.log(
            logger,
            logging.WARNING,
            "dropped signal %r of workflow %s: its payload does not decode: %s",
            name,
            info.workflow_id if info else "?",
            error,
        )
        return True

    def _invoke_signal_handler(
        self, handler: tuple[Any, Callable[[Any], Any]], payload: bytes
    ) -> None:
        signal_type, function = handler
        try:
            signal = _payload.decode(payload, signal_type)
        except PayloadDecodeError as error:
            if self.drop_signal(getattr(signal_type, "__name__", "?"), error):
                return
            self._handler_failed(error)
            return
        try:
            outcome = function(signal)
            if asyncio.iscoroutine(outcome):
                task = self.loop.create_task(outcome)
                task.add_done_callback(self._signal_task_done)
        except Exception as error:
            self._handler_failed(error)

    def _signal_task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            assert error is not None
            self._handler_failed(error)

    def _handler_failed(self, error: BaseException) -> None:
        if not self.fails_run(error):
            # Fails the task, as an exception in the workflow's body would.
            if self.task_error is None:
                self.task_error = error
            return
        # A failure that fails the run, as it would raised in the workflow's body.
        if self.handler_error is None:
            self.handler_error = error
            if self.main_task is not None:
                self.main_task.cancel()

    def set_signal_handler(
        self, name: str, signal_type: Any, function: Callable[[Any], Any]
    ) -> None:
        self.signal_handlers[name] = (signal_type, function)
        buffered = self.signal_buffers.pop(name, None)
        for payload in buffered or ():
            self.loop.call_soon(self._invoke_signal_handler, (signal_type, function), payload)

    def handle_query(self, name: str, payload: bytes) -> bytes:
        handler = self.query_handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self.query_handlers)) or "none"
            raise QueryFailedError(f"no query handler for {name!r} (registered: {known})")
        query_type, function = handler
        # A query must leave no trace: whatever the handler calls, the commands, sequence
        # numbers, random state and pending futures are put back as they were.
        commands = list(self.commands)
        sequences = (self.next_activity_seq, self.next_timer_seq)
        random_state = None if self._random is None else self._random.getstate()
        activities, timers = set(self.activities), set(self.timers)
        conditions = list(self.conditions)
        handlers = (dict(self.signal_handlers), dict(self.query_handlers))
        ready = len(self.loop._ready)
        cancelled = sum(1 for pending in self.activities.values() if pending[0].cancelled())
        try:
            try:
                result = function(_payload.decode(payload, query_type))
            except Exception as error:
                raise QueryFailedError(f"query handler {name!r} raised: {error!r}") from error
            if asyncio.iscoroutine(result):
                result.close()
                raise QueryFailedError(
                    f"query handler {name!r} must be a plain function, not async"
                )
            if self.commands != commands or sequences != (
                self.next_activity_seq,
                self.next_timer_seq,
            ):
                raise QueryFailedError(
                    f"query handler {name!r} issued commands; queries are read-only"
                )
            if (
                self.loop.cancellation_requested
                or len(self.loop._ready) != ready
                or cancelled
                != sum(1 for pending in self.activities.values() if pending[0].cancelled())
                or handlers != (self.signal_handlers, self.query_handlers)
            ):
                # It cancelled something, scheduled a callback or changed a handler: none of
                # it can be undone, so the instance is dropped and rebuilt from history.
                self.tainted = True
                raise QueryFailedError(
                    f"query handler {name!r} changed the workflow's state; queries are read-only"
                )
            return _payload.encode(result, self.payload_limit)
        finally:
            self.commands = commands
            self.next_activity_seq, self.next_timer_seq = sequences
            if random_state is None:
                self._random = None
            else:
                assert self._random is not None
                self._random.setstate(random_state)
            for seq in set(self.activities) - activities:
                self.activities.pop(seq)[0].cancel()
            for seq in set(self.timers) - timers:
                self.timers.pop(seq).future.cancel()
            self.conditions = conditions
            # Nothing it made may be swept into a cancel command later.
            self.loop.cancellation_requested = False
