"""Retry policy for activities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed activity attempt is retried (Temporal's semantics and defaults).

    Attributes:
        initial_interval: Wait before the first retry.
        backoff_coefficient: Each further wait is this many times the last.
        maximum_interval: Cap on the wait; default 100 x ``initial_interval``.
        maximum_attempts: Attempts in all, first included; 0 means unlimited.
        non_retryable_error_types: Error type names (``ApplicationError.type`` or exception
            class names) that are never retried.
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.backoff_coefficient < 1:
            raise ValueError("backoff_coefficient must be at least 1")
        if self.maximum_attempts < 0:
            raise ValueError("maximum_attempts must be 0 (unlimited) or more")
