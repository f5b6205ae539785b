"""Typed signals and queries: subclass :class:`Signal` or ``Query[ResultType]``."""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

__all__ = ["Query", "Signal", "message_name", "query_result_type"]

ResultT = TypeVar("ResultT")


class Signal(msgspec.Struct):
    """Base of typed signals. The signal's name is the class name unless the class sets
    ``message_name = "..."``; its fields are its payload::

        class Approve(Signal):
            approver: str
    """

    message_name: ClassVar[str | None] = None


class Query(msgspec.Struct, Generic[ResultT]):
    """Base of typed queries, generic in their result type::

    class Status(Query[str]):
        pass
    """

    message_name: ClassVar[str | None] = None


def message_name(message_type: type[Signal] | type[Query[Any]]) -> str:
    """The wire name of a signal or query class."""
    return message_type.message_name or message_type.__name__


def query_result_type(query_type: type[Query[Any]]) -> Any:
    """The ``ResultT`` a query class was declared with (``Any`` if none)."""
    for klass in query_type.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Query):
                arguments = typing.get_args(base)
                if arguments and not isinstance(arguments[0], TypeVar):
                    return arguments[0]
    return Any
