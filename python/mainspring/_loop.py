"""The deterministic event loop that workflow code runs on.

It implements just enough of ``asyncio.AbstractEventLoop`` for futures, tasks and
``asyncio.gather`` to work, and runs callbacks strictly in the order they were scheduled, so the
same jobs always produce the same commands. Everything that would reach outside (timers by wall
clock, sockets, threads, subprocesses) is refused: the call records the escape and raises
:class:`WorkflowEscapeError`, and the worker fails the workflow task even if user code swallows
the exception, so nothing that depended on it is ever recorded.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import weakref
from collections.abc import Callable
from typing import Any

from .errors import WorkflowEscapeError

# Loop methods workflow code may use; every other AbstractEventLoop method is an escape.
_ALLOWED = frozenset(
    {
        "call_soon",
        "create_future",
        "create_task",
        "get_debug",
        "set_debug",
        "is_running",
        "is_closed",
        "time",
        "call_exception_handler",
        "default_exception_handler",
        "get_exception_handler",
        "set_exception_handler",
        "get_task_factory",
        "set_task_factory",
        "close",
        "shutdown_asyncgens",
        "shutdown_default_executor",
    }
)

_HINTS = {
    "call_later": "use ctx.sleep() instead of asyncio.sleep()/wait_for() with a timeout",
    "call_at": "use ctx.sleep() instead of asyncio.sleep()/wait_for() with a timeout",
    "run_in_executor": "run blocking work in an activity",
}


class WorkflowEventLoop(asyncio.AbstractEventLoop):
    """One per workflow instance. Not thread-safe; driven by :meth:`run_until_idle`."""

    def __init__(self) -> None:
        self._ready: collections.deque[
            tuple[Callable[..., Any], tuple[Any, ...], contextvars.Context | None]
        ] = collections.deque()
        self._now_seconds = 0.0
        self._running = False
        self._debug = False
        # The tasks workflow code made on this loop, besides the main one (a disposed
        # instance closes those still pending; asyncio.all_tasks would scan every task of
        # the process). Made at the first: most workflows make none.
        self.tasks: weakref.WeakSet[asyncio.Task[Any]] | None = None
        self.escape: str | None = None
        # Set whenever workflow code may have cancelled a future (see WorkflowInstance).
        self.cancellation_requested = False
        self.unhandled_errors: list[dict[str, Any]] = []

    # The asyncio surface workflow code legitimately reaches.

    # Returns no Handle: asyncio's own callers (futures, tasks) never use it.
    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> None:
        self._ready.append((callback, args, context))

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self, coro: Any, *, name: str | None = None, context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        if context is None:
            task = _WorkflowTask(coro, loop=self, name=name)
        else:
            # Task(context=) exists from Python 3.11; asyncio passes it only on versions that
            # have it.
            task = _WorkflowTask(coro, loop=self, name=name, context=context)  # type: ignore[call-arg]
        if self.tasks is None:
            self.tasks = weakref.WeakSet()
        self.tasks.add(task)
        return task

    def create_main_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """The workflow function's own task (its instance holds it: not among ``tasks``)."""
        return _WorkflowTask(coro, loop=self, name=name)

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return False

    def time(self) -> float:
        return self._now_seconds

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # asyncio reports e.g. never-retrieved task exceptions here; keep them for the worker's
        # log instead of raising inside a garbage-collector callback.
        self.unhandled_errors.append(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.unhandled_errors.append(context)

    # Driving the loop.

    def run_until_idle(self, now_seconds: float) -> None:
        """Runs callbacks until none is ready. Workflow code sees this loop as running."""
        self._now_seconds = now_seconds
        ready = self._ready
        if not ready:
            return
        if self._running:
            self._drain(ready)
            return
        with self.running():
            self._drain(ready)

    @staticmethod
    def _drain(
        ready: collections.deque[
            tuple[Callable[..., Any], tuple[Any, ...], contextvars.Context | None]
        ],
    ) -> None:
        while ready:
            callback, args, context = ready.popleft()
            if context is None:
                callback(*args)
            else:
                context.run(callback, *args)

    def has_ready(self) -> bool:
        return bool(self._ready)

    def drop_ready(self) -> None:
        """Forgets every callback scheduled (its instance was disposed of: none will run)."""
        self._ready.clear()

    def running(self) -> _Running:
        """Makes this the running loop (what asyncio.get_running_loop() returns) for a stretch
        of activations: the worker enters it once per workflow task, not once per activation."""
        return _Running(self)


class _Running:
    """Context manager behind :meth:`WorkflowEventLoop.running` (a class: it is on the hot
    path, and a generator-based context manager costs several times more)."""

    __slots__ = ("_entered", "_loop", "_previous")

    def __init__(self, loop: WorkflowEventLoop) -> None:
        self._loop = loop
        self._previous: asyncio.AbstractEventLoop | None = None
        self._entered = False

    def __enter__(self) -> None:
        loop = self._loop
        if loop._running:
            return
        self._previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(loop)
        loop._running = True
        self._entered = True

    def __exit__(self, *exc_info: object) -> None:
        if self._entered:
            self._loop._running = False
            asyncio.events._set_running_loop(self._previous)


class _WorkflowTask(asyncio.Task):  # type: ignore[type-arg]
    """A task that tells its loop when it is cancelled: cancelling a task cancels the future
    it awaits, which may be an activity or timer whose cancellation must be recorded."""

    def cancel(self, msg: Any = None) -> bool:
        loop = self.get_loop()
        if isinstance(loop, WorkflowEventLoop):
            loop.cancellation_requested = True
        return super().cancel(msg)


def _forbidden(name: str) -> Callable[..., Any]:
    hint = _HINTS.get(name, "do I/O and real-time waits in activities")

    def refuse(self: WorkflowEventLoop, *args: Any, **kwargs: Any) -> Any:
        message = (
            f"[MS1200] workflow code called event loop method {name!r}, which is not "
            f"deterministic: {hint}"
        )
        if self.escape is None:
            self.escape = message
        # Close coroutines handed to us so they do not warn "never awaited".
        for argument in args:
            if asyncio.iscoroutine(argument):
                argument.close()
        raise WorkflowEscapeError(message)

    refuse.__name__ = name
    return refuse


for _name in dir(asyncio.AbstractEventLoop):
    if _name.startswith("_") or _name in _ALLOWED:
        continue
    if callable(getattr(asyncio.AbstractEventLoop, _name)):
        setattr(WorkflowEventLoop, _name, _forbidden(_name))


def new_workflow_loop() -> WorkflowEventLoop:
    """A fresh loop. (Type checkers see AbstractEventLoop's abstract methods; they are all
    defined above, as refusals, by the loop over ``dir(asyncio.AbstractEventLoop)``.)"""
    return WorkflowEventLoop()  # type: ignore[abstract]
