"""``Replayer``: runs recorded histories through current workflow code to prove it still
replays (run it in CI over exported histories before deploying a change)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import _core
from ._definitions import workflow_definition
from ._instance import WorkflowInstance
from ._payload import DEFAULT_MAXIMUM_PAYLOAD_BYTES
from ._protocol import JOB_START_WORKFLOW
from ._workflow_tasks import advance
from .errors import InvalidHistoryError, UnknownWorkflowTypeError
from .history import History

__all__ = ["Replayer"]


class Replayer:
    def __init__(
        self,
        *,
        workflows: Sequence[Callable[..., Any]],
        workflow_failure_exception_types: Sequence[type[BaseException]] = (),
    ) -> None:
        self._definitions = {
            definition.name: definition for definition in map(workflow_definition, workflows)
        }
        self._failure_types = tuple(workflow_failure_exception_types)

    def replay(self, history: History) -> None:
        """Replays ``history`` through the registered workflow code.

        Raises:
            NonDeterminismError: the code issued a command the history did not record; the
                error names the event id and both commands.
            UnknownWorkflowTypeError: the history's workflow type is not registered here.
            WorkflowTaskFailedError: a replayed task's code raised an exception that fails
                the task (a bug the history's run did not have, or a history from a run whose
                task was failing when it was exported).
            UnsupportedHistoryError: the history was written by a newer engine.
        """
        run = _core.WorkflowRun()
        run.add_events(history.encoded)
        first = run.next_activation(0, allow_live=False)
        start = (
            None
            if first is None
            else next((job for job in first[2] if job[0] == JOB_START_WORKFLOW), None)
        )
        if first is None or start is None:
            raise InvalidHistoryError("the history has no completed first workflow task")
        workflow_type = start[1]
        definition = self._definitions.get(workflow_type)
        if definition is None:
            raise UnknownWorkflowTypeError(
                f"workflow type {workflow_type!r} is not registered with this replayer"
            )
        instance = WorkflowInstance(
            definition,
            DEFAULT_MAXIMUM_PAYLOAD_BYTES,
            run=run,
            failure_exception_types=self._failure_types,
        )
        run.complete(instance.activate(first))
        advance(instance, 0, allow_live=False)
