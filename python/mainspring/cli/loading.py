"""Finding the workflows and activities a user module declares (`MODULE[:ATTR]`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._definitions import ActivityDefinition, WorkflowDefinition
from ..messages import Signal, message_name
from .output import UserError


def _candidates(target: str) -> list[Any]:
    """The objects `package.module` or `package.module:ATTR` declares (ATTR: an object whose
    attributes, or a list whose items, they are)."""
    module_name, _, attribute = target.partition(":")
    # Like `python -m`, find modules in the working directory.
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"cannot import {module_name!r}: {error}") from None
    container: Any = module
    if attribute:
        try:
            container = getattr(module, attribute)
        except AttributeError:
            raise UserError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return (
        list(container) if isinstance(container, (list, tuple)) else list(vars(container).values())
    )


def load(target: str) -> tuple[list[Callable[..., Any]], list[Callable[..., Any]]]:
    """The workflows and activities `package.module[:ATTR]` declares."""
    candidates = _candidates(target)
    workflows = [
        item for item in candidates if _is(item, "__mainspring_workflow__", WorkflowDefinition)
    ]
    activities = [
        item for item in candidates if _is(item, "__mainspring_activity__", ActivityDefinition)
    ]
    if not workflows and not activities:
        raise UserError(f"{target} declares no @workflow or @activity functions")
    return workflows, activities


def _is(item: Any, attribute: str, kind: type) -> bool:
    return isinstance(getattr(item, attribute, None), kind)


def signal_classes(target: str) -> dict[str, type[Signal]]:
    """The signal classes `package.module[:ATTR]` declares, by their wire name."""
    return {
        message_name(item): item
        for item in _candidates(target)
        if isinstance(item, type) and issubclass(item, Signal) and item is not Signal
    }
