"""Exceptions to recorded failures and back, keeping the cause chain."""

from __future__ import annotations

import traceback
from datetime import timedelta
from typing import Any

from . import _payload
from ._protocol import FailureTuple
from .errors import ApplicationError

_MAXIMUM_CHAIN = 20


def _details_bytes(error: BaseException) -> bytes:
    details = error.details if isinstance(error, ApplicationError) else None
    try:
        return _payload.encode(details)
    except Exception:
        return _payload.encode(repr(details))


def failure_from_exception(error: BaseException, depth: int = 0) -> FailureTuple:
    """The failure tuple recorded for ``error`` and its ``__cause__`` chain."""
    if isinstance(error, ApplicationError):
        error_type, non_retryable, message = error.type, error.non_retryable, error.message
    else:
        error_type, non_retryable, message = type(error).__name__, False, str(error)
    remote_stack = getattr(error, "remote_stack_trace", "")
    if remote_stack and error.__traceback__ is None:
        # Rebuilt from a recorded failure and re-raised as is: keep where it first happened.
        stack = remote_stack
    else:
        stack = "".join(
            traceback.format_exception(type(error), error, error.__traceback__, chain=False)
        )
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    cause_failure = (
        failure_from_exception(cause, depth + 1)
        if cause is not None and depth < _MAXIMUM_CHAIN
        else None
    )
    delay = error.next_retry_delay if isinstance(error, ApplicationError) else None
    delay_ms = None if delay is None else max(0, round(delay.total_seconds() * 1000))
    return (
        message,
        error_type,
        non_retryable,
        _details_bytes(error),
        stack,
        cause_failure,
        delay_ms,
    )


def exception_from_failure(failure: Any) -> ApplicationError:
    """Rebuilds an :class:`ApplicationError` chain from a recorded failure tuple."""
    message, error_type, non_retryable, details, stack, cause, delay_ms = failure
    try:
        decoded_details = _payload.decode(details)
    except Exception:
        decoded_details = None
    error = ApplicationError(
        message,
        details=decoded_details,
        type=error_type,
        non_retryable=non_retryable,
        next_retry_delay=None if delay_ms is None else timedelta(milliseconds=delay_ms),
    )
    error.remote_stack_trace = stack
    if cause is not None:
        error.__cause__ = exception_from_failure(cause)
    return error
