"""What workflow code uses: :class:`WorkflowContext`, handed to every workflow as ``ctx``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Generator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from . import _payload
from ._definitions import activity_definition
from ._instance import FLAG_STAGED_JOBS
from .errors import PayloadDecodeError, WaitTimeoutError
from .messages import Query, Signal, message_name
from .retry import RetryPolicy

if TYPE_CHECKING:
    from ._instance import WorkflowInfo, WorkflowInstance
    from ._loop import WorkflowEventLoop

__all__ = ["ActivityHandle", "WorkflowContext"]

ResultT = TypeVar("ResultT")
SignalT = TypeVar("SignalT", bound=Signal)
QueryResultT = TypeVar("QueryResultT")

_NO_INPUT: Any = object()
_DEFAULT_RETRY = RetryPolicy()

# Activity options resolved to the command's tuple form, per distinct call-site arguments: a
# workflow resuming thousands of times per second should not redo unit conversions each time.
_resolved_options: dict[Any, tuple[str, Any, tuple[Any, ...], Callable[[bytes], Any]]] = {}
_RESOLVED_OPTIONS_LIMIT = 4096


def _milliseconds(duration: timedelta | float | None) -> int | None:
    if duration is None:
        return None
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    if seconds < 0:
        raise ValueError("durations cannot be negative")
    return round(seconds * 1000)


def _resolve_options(
    activity: Callable[..., Any] | str,
    start_to_close_timeout: timedelta | float | None,
    schedule_to_close_timeout: timedelta | float | None,
    schedule_to_start_timeout: timedelta | float | None,
    heartbeat_timeout: timedelta | float | None,
    retry_policy: RetryPolicy | None,
) -> tuple[str, Any, tuple[Any, ...], Callable[[bytes], Any]]:
    """(activity type, output type, the option fields of a ScheduleActivity command, the
    result's decoder)."""
    if isinstance(activity, str):
        activity_type, output_type = activity, Any
    else:
        definition = activity_definition(activity)
        activity_type, output_type = definition.name, definition.output_type
    start_to_close = _milliseconds(start_to_close_timeout)
    schedule_to_close = _milliseconds(schedule_to_close_timeout)
    if start_to_close is None and schedule_to_close is None:
        raise ValueError(
            "execute_activity needs start_to_close_timeout or schedule_to_close_timeout"
        )
    policy = retry_policy or _DEFAULT_RETRY
    options = (
        schedule_to_close,
        _milliseconds(schedule_to_start_timeout),
        start_to_close,
        _milliseconds(heartbeat_timeout),
        _milliseconds(policy.initial_interval),
        float(policy.backoff_coefficient),
        _milliseconds(policy.maximum_interval),
        policy.maximum_attempts,
        list(policy.non_retryable_error_types),
    )
    return activity_type, output_type, options, _payload.decoder(output_type)


class ActivityHandle(Generic[ResultT]):
    """A started activity: await it for its result, or :meth:`cancel` it."""

    def __init__(self, future: asyncio.Future[ResultT], seq: int, loop: WorkflowEventLoop) -> None:
        self._future = future
        self._loop = loop
        self.seq = seq

    def __await__(self) -> Generator[Any, None, ResultT]:
        return self._future.__await__()

    def cancel(self) -> bool:
        """Requests cancellation; awaiting the handle then raises ``asyncio.CancelledError``."""
        self._loop.cancellation_requested = True
        return self._future.cancel()

    def done(self) -> bool:
        return self._future.done()


class _ReplayAwareLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Drops records while replaying and holds them back while the worker runs the workflow
    ahead of its history, so each line is logged once, by the run that counts."""

    def __init__(self, instance: WorkflowInstance) -> None:
        super().__init__(logging.getLogger("mainspring.workflow"), {})
        self._instance = instance

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        self._instance.log(self.logger, level, msg, *args, **kwargs)


class WorkflowContext:
    """The workflow's window on the engine. Everything here is deterministic: it reads only
    the history, so replay sees the same values."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance
        self.logger: logging.LoggerAdapter = _ReplayAwareLogger(instance)  # type: ignore[type-arg]

    @property
    def info(self) -> WorkflowInfo:
        info = self._instance.info
        assert info is not None, "the workflow has started before its code runs"
        return info

    @property
    def is_replaying(self) -> bool:
        return self._instance.replaying

    @property
    def is_cancel_requested(self) -> bool:
        return self._instance.cancel_requested

    def now(self) -> datetime:
        """The current workflow task's time (recorded, so replay sees the same)."""
        return datetime.fromtimestamp(self._instance.now_ms / 1000, tz=timezone.utc)

    def random(self) -> float:
        """A float in [0, 1) from a generator seeded by the run id."""
        return self._instance.random.random()

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID from the run's deterministic generator."""
        return uuid.UUID(int=self._instance.random.getrandbits(128), version=4)

    # Activities.

    def _schedule_activity(
        self,
        activity: Callable[..., Any] | str,
        input: Any,
        start_to_close_timeout: timedelta | float | None,
        schedule_to_close_timeout: timedelta | float | None,
        schedule_to_start_timeout: timedelta | float | None,
        heartbeat_timeout: timedelta | float | None,
        retry_policy: RetryPolicy | None,
        task_queue: str | None,
    ) -> asyncio.Future[Any]:
        key = (
            activity,
            start_to_close_timeout,
            schedule_to_close_timeout,
            schedule_to_start_timeout,
            heartbeat_timeout,
            retry_policy,
        )
        cacheable = True
        try:
            resolved = _resolved_options.get(key)
        except TypeError:  # an unhashable argument (a list of error types): resolve each time
            cacheable, resolved = False, None
        if resolved is None:
            resolved = _resolve_options(*key)
            if cacheable:
                if len(_resolved_options) > _RESOLVED_OPTIONS_LIMIT:
                    _resolved_options.clear()
                _resolved_options[key] = resolved
        activity_type, output_type, options, decode = resolved
        instance = self._instance
        input_bytes = (
            _payload.NULL if input is _NO_INPUT else _payload.encode(input, instance.payload_limit)
        )
        return instance.schedule_activity(
            activity_type,
            input_bytes,
            task_queue or instance.task_queue,
            options,
            output_type,
            decode,
        )

    def start_activity(
        self,
        activity: Callable[..., Any] | str,
        input: Any = _NO_INPUT,
        *,
        start_to_close_timeout: timedelta | float | None = None,
        schedule_to_close_timeout: timedelta | float | None = None,
        schedule_to_start_timeout: timedelta | float | None = None,
        heartbeat_timeout: timedelta | float | None = None,
        retry_policy: RetryPolicy | None = None,
        task_queue: str | None = None,
    ) -> ActivityHandle[Any]:
        """Schedules an activity and returns a handle to await or cancel.

        At least one of ``start_to_close_timeout`` and ``schedule_to_close_timeout`` is
        required, as in Temporal: an activity with neither could hang its workflow forever.
        """
        future = self._schedule_activity(
            activity,
            input,
            start_to_close_timeout,
            schedule_to_close_timeout,
            schedule_to_start_timeout,
            heartbeat_timeout,
            retry_policy,
            task_queue,
        )
        seq = self._instance.next_activity_seq - 1  # the one just scheduled
        return ActivityHandle(future, seq, self._instance.loop)

    def execute_activity(
        self,
        activity: Callable[..., Any] | str,
        input: Any = _NO_INPUT,
        *,
        start_to_close_timeout: timedelta | float | None = None,
        schedule_to_close_timeout: timedelta | float | None = None,
        schedule_to_start_timeout: timedelta | float | None = None,
        heartbeat_timeout: timedelta | float | None = None,
        retry_policy: RetryPolicy | None = None,
        task_queue: str | None = None,
    ) -> Awaitable[Any]:
        """Runs an activity; await it for the result. Raises ``ActivityError`` if it fails.

        The activity is scheduled when this is called, so ``asyncio.gather`` over several
        calls runs them in parallel.
        """
        return self._schedule_activity(
            activity,
            input,
            start_to_close_timeout,
            schedule_to_close_timeout,
            schedule_to_start_timeout,
            heartbeat_timeout,
            retry_policy,
            task_queue,
        )

    # Timers and conditions.

    async def sleep(self, duration: timedelta | float) -> None:
        """A durable timer: survives restarts; a month-long sleep costs nothing while it waits."""
        duration_ms = _milliseconds(duration) or 0
        if duration_ms <= 0:
            await asyncio.sleep(0)
            return
        await self._instance.start_timer(duration_ms)

    async def wait_condition(
        self, predicate: Callable[[], bool], timeout: timedelta | float | None = None
    ) -> None:
        """Waits until ``predicate()`` is true; it is re-checked after every job.

        Raises:
            TimeoutError: ``timeout`` passed first (a durable timer).
        """
        if predicate():
            return
        instance = self._instance
        condition: asyncio.Future[None] = instance.loop.create_future()
        instance.conditions.append((predicate, condition))
        timeout_ms = _milliseconds(timeout)
        if timeout_ms is None:
            await condition
            return
        timer = instance.start_timer(timeout_ms)
        either: asyncio.Future[None] = instance.loop.create_future()

        def settle(_: asyncio.Future[None]) -> None:
            if not either.done():
                either.set_result(None)

        condition.add_done_callback(settle)
        timer.add_done_callback(settle)
        try:
            await either
        finally:
            if not timer.done():
                instance.loop.cancellation_requested = True
                timer.cancel()
            if not condition.done():
                condition.cancel()
        if condition.cancelled():
            raise WaitTimeoutError(f"condition not met within {timeout_ms} ms")
        condition.result()

    # Signals and queries.

    @overload
    async def wait_signal(self, signal_type: type[SignalT]) -> SignalT: ...
    @overload
    async def wait_signal(
        self, signal_type: type[SignalT], timeout: timedelta | float | None
    ) -> SignalT: ...
    async def wait_signal(
        self, signal_type: type[SignalT], timeout: timedelta | float | None = None
    ) -> SignalT:
        """Returns the next signal of this type, buffered if it arrived before the call.

        Each signal goes to exactly one caller: concurrent waiters queue, first come first
        served. A signal whose payload does not decode as ``signal_type`` is logged and
        dropped, and the wait goes on.

        Raises:
            WaitTimeoutError: no such signal arrived within ``timeout`` (also a builtin
                ``TimeoutError``; unhandled, it fails the run).
        """
        name = message_name(signal_type)
        instance = self._instance
        if not instance.flags & FLAG_STAGED_JOBS:
            return await self._wait_signal_as_recorded_before_stages(name, signal_type, timeout)
        timeout_ms = _milliseconds(timeout)
        timer: asyncio.Future[None] | None = None
        try:
            while True:
                taken = instance.take_signal(name)
                if isinstance(taken, bytes):
                    payload = taken
                else:
                    try:
                        if timeout_ms is None:
                            await taken
                        else:
                            if timer is None:
                                timer = instance.start_timer(timeout_ms)
                            await asyncio.wait((taken, timer), return_when=asyncio.FIRST_COMPLETED)
                    except BaseException:
                        # Cancelled while waiting: a signal already handed over goes on to
                        # the next waiter (or back to the buffer), never lost.
                        instance.give_back_signal(name, taken)
                        raise
                    if not taken.done():
                        instance.give_back_signal(name, taken)
                        raise WaitTimeoutError(f"no {name} signal within {timeout_ms} ms")
                    payload = taken.result()
                try:
                    decoded: SignalT = _payload.decode(payload, signal_type)
                except PayloadDecodeError as error:
                    if instance.drop_signal(name, error):
                        continue
                    raise
                return decoded
        finally:
            if timer is not None and not timer.done():
                instance.loop.cancellation_requested = True  # the CancelTimer command
                timer.cancel()

    async def _wait_signal_as_recorded_before_stages(
        self, name: str, signal_type: type[SignalT], timeout: timedelta | float | None
    ) -> SignalT:
        """wait_signal as histories recorded before STAGED_JOBS ran it (and so replay it):
        signals wait in the buffer and a waiter wakes when conditions are checked."""
        buffers = self._instance.signal_buffers
        await self.wait_condition(lambda: bool(buffers.get(name)), timeout)
        payload = buffers[name].popleft()
        decoded: SignalT = _payload.decode(payload, signal_type)
        return decoded

    def set_signal_handler(
        self, signal_type: type[SignalT], handler: Callable[[SignalT], Any]
    ) -> None:
        """Calls ``handler(signal)`` for every signal of this type, buffered ones first.
        The handler may be ``async``; if it raises, the workflow fails."""
        self._instance.set_signal_handler(message_name(signal_type), signal_type, handler)

    def set_query_handler(
        self,
        query_type: type[Query[QueryResultT]],
        handler: Callable[[Query[QueryResultT]], QueryResultT],
    ) -> None:
        """Answers queries of this type with ``handler(query)``: a plain, read-only function."""
        self._instance.query_handlers[message_name(query_type)] = (query_type, handler)
