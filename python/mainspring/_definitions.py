"""The ``@workflow`` and ``@activity`` decorators and what they record about a function."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])

_WORKFLOW_ATTRIBUTE = "__mainspring_workflow__"
_ACTIVITY_ATTRIBUTE = "__mainspring_activity__"
_NO_INPUT: Any = object()


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    function: Callable[..., Any]
    takes_input: bool
    input_type: Any
    output_type: Any
    # Exception types that fail the run when workflow code raises them (besides FailureError).
    failure_exception_types: tuple[type[BaseException], ...] = ()


@dataclass(frozen=True)
class ActivityDefinition:
    name: str
    function: Callable[..., Any]
    takes_context: bool
    takes_input: bool
    input_type: Any
    output_type: Any
    is_async: bool


def _signature_types(
    function: Callable[..., Any], *, context_required: bool
) -> tuple[bool, bool, Any, Any]:
    """(takes_context, takes_input, input_type, output_type) from a function's annotations."""
    hints = typing.get_type_hints(function)
    parameters = list(inspect.signature(function).parameters.values())
    takes_context = False
    if parameters:
        first = parameters[0]
        annotation = hints.get(first.name)
        annotation_name = getattr(annotation, "__name__", "")
        if first.name == "ctx" or annotation_name in ("WorkflowContext", "ActivityContext"):
            takes_context = True
            parameters = parameters[1:]
    if context_required and not takes_context:
        raise TypeError(
            f"{function.__qualname__}: a workflow's first parameter is its WorkflowContext"
        )
    if len(parameters) > 1:
        raise TypeError(
            f"{function.__qualname__}: takes one input after the context; "
            "group several values in a msgspec.Struct or dataclass"
        )
    takes_input = bool(parameters)
    input_type = hints.get(parameters[0].name, Any) if parameters else None
    output_type = hints.get("return", Any)
    return takes_context, takes_input, input_type, output_type


@overload
def workflow(function: FunctionT, /) -> FunctionT: ...
@overload
def workflow(
    *,
    name: str | None = None,
    failure_exception_types: Sequence[type[BaseException]] = (),
) -> Callable[[FunctionT], FunctionT]: ...
def workflow(
    function: FunctionT | None = None,
    /,
    *,
    name: str | None = None,
    failure_exception_types: Sequence[type[BaseException]] = (),
) -> FunctionT | Callable[[FunctionT], FunctionT]:
    """Marks an ``async def f(ctx: WorkflowContext, input) -> output`` as a workflow.

    Use bare (``@workflow``) or with a name (``@workflow(name="checkout")``); the name defaults
    to the function's name and is what histories record.

    An exception the workflow's code leaves unhandled fails the run only if it is a
    ``FailureError`` (``ApplicationError``, ``ActivityError``, ``WaitTimeoutError``, ...) or an
    instance of one of ``failure_exception_types`` (temporalio's spelling; listing
    ``NonDeterminismError`` makes a replay mismatch fail the run too). Any other exception
    fails the workflow task, which is retried with backoff until the code is fixed.
    """

    def decorate(target: FunctionT) -> FunctionT:
        if not inspect.iscoroutinefunction(target):
            raise TypeError(f"{target.__qualname__}: a workflow must be an async def")
        _, takes_input, input_type, output_type = _signature_types(target, context_required=True)
        definition = WorkflowDefinition(
            name=name or target.__name__,
            function=target,
            takes_input=takes_input,
            input_type=input_type,
            output_type=output_type,
            failure_exception_types=tuple(failure_exception_types),
        )
        setattr(target, _WORKFLOW_ATTRIBUTE, definition)
        return target

    return decorate(function) if function is not None else decorate


@overload
def activity(function: FunctionT, /) -> FunctionT: ...
@overload
def activity(*, name: str | None = None) -> Callable[[FunctionT], FunctionT]: ...
def activity(
    function: FunctionT | None = None, /, *, name: str | None = None
) -> FunctionT | Callable[[FunctionT], FunctionT]:
    """Marks a function as an activity: ``async def`` runs on the worker's loop, plain ``def``
    in the worker's thread pool. The first parameter may be an ``ActivityContext``."""

    def decorate(target: FunctionT) -> FunctionT:
        takes_context, takes_input, input_type, output_type = _signature_types(
            target, context_required=False
        )
        definition = ActivityDefinition(
            name=name or target.__name__,
            function=target,
            takes_context=takes_context,
            takes_input=takes_input,
            input_type=input_type,
            output_type=output_type,
            is_async=inspect.iscoroutinefunction(target),
        )
        setattr(target, _ACTIVITY_ATTRIBUTE, definition)
        return target

    return decorate(function) if function is not None else decorate


def workflow_definition(target: Any) -> WorkflowDefinition:
    definition = getattr(target, _WORKFLOW_ATTRIBUTE, None)
    if not isinstance(definition, WorkflowDefinition):
        raise TypeError(f"{target!r} is not decorated with @workflow")
    return definition


def activity_definition(target: Any) -> ActivityDefinition:
    definition = getattr(target, _ACTIVITY_ATTRIBUTE, None)
    if not isinstance(definition, ActivityDefinition):
        raise TypeError(f"{target!r} is not decorated with @activity")
    return definition
