"""A storage written in Python over the core's rules: what a store on asyncpg (or any other
driver) builds on, so that it holds I/O and no rule.

A store implements :class:`StoreTables`: reads of its records and one fenced write,
:meth:`StoreTables.persist`, which writes a :class:`~mainspring._core.Decision` in one
transaction with compare-and-set on the versions the decision names (and the unique index over
open runs). :class:`AdaptedStorage` turns that into the whole :class:`~.base.Storage` contract:
every operation loads the records it needs, the operations submitted in one pass of the event
loop are decided together in one native call (``_core.Rules.decide``), and each decision is
persisted. A decision whose write finds a record changed since it was loaded (another process
got there first) is decided again on fresh records.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from .. import _core
from .._protocol import FailureTuple, WorkflowLeaseTuple
from ..errors import (
    CommitUnknownError,
    InvalidCommandError,
    QueryFailedError,
    StaleTaskError,
    StorageConflictError,
)
from ._known_records import KnownRecords
from ._read_back import landed
from ._store_tables import Due, StoreTables
from .base import (
    ActivitySlots,
    ActivityTask,
    ChangeNotices,
    CommittedTask,
    QueryTask,
    SlotHold,
    StorageCapabilities,
    WorkflowDescription,
    WorkflowPage,
    WorkflowTask,
    default_identity,
    description_from_row,
    page_from_rows,
)
from .memory import SystemClock, VirtualClock, activity_task

#: How often a decision whose write conflicted is decided again before the conflict is
#: reported.
CONFLICT_RETRIES = 8


#: Loads what an operation needs and makes its request: `(the run's key | None for a new run,
#: the request)`. Its argument says whether it may decide on the records this object
#: remembers (an operation's first attempt, see `_apply`'s ``known_run``) or must read them.
_Loaded = Callable[[bool], Awaitable[tuple[int | None, _core.RuleRequest]]]


class AdaptedStorage:
    """The storage contract over a store's :class:`StoreTables` and the core's rules."""

    capabilities = StorageCapabilities(groups_commits=True, fuses_commits=True, eager=True)

    def __init__(
        self,
        tables: StoreTables,
        *,
        clock: VirtualClock | SystemClock | None = None,
        poll_interval: timedelta = timedelta(milliseconds=100),
        workflow_task_retry_initial: timedelta = timedelta(seconds=1),
        workflow_task_retry_maximum: timedelta = timedelta(seconds=60),
        identity: str | None = None,
    ) -> None:
        self.tables = tables
        #: The name the leases this storage takes are held under (``describe`` shows it).
        self.identity = identity or default_identity()
        self._clock = clock or SystemClock()
        self.now_ms = self._clock.now_ms
        self._poll_seconds = poll_interval.total_seconds()
        self._retry_ms = (
            int(workflow_task_retry_initial.total_seconds() * 1000),
            int(workflow_task_retry_maximum.total_seconds() * 1000),
        )
        self._rules, self._rules_process = self._new_rules(), os.getpid()
        self._pending: list[tuple[_core.RuleRequest, asyncio.Future[Any]]] = []
        self._deciding = False
        self._change_notices = ChangeNotices()
        # Pollers wait on these: fired only by what leaves them work (the rules say which
        # decisions do: `Decision.wakes_pollers`), a query, the clock, a tick, another
        # process's notice. A commit whose work was leased straight to its worker wakes no
        # poller, so a busy worker's pollers do not look after every step it takes.
        self._work_notices = ChangeNotices()
        # Futures of `wait_closed` callers, by run id: resolved when the run closes (here, or
        # in another process that says so), so a commit that closes nothing wakes none of them.
        self._close_waiters: dict[str, list[asyncio.Future[bytes | None]]] = {}
        # The records this object last wrote: a run's next step is decided on them, unread
        # (fenced by their versions like any read; see _known_records).
        self._known = KnownRecords()
        if isinstance(self._clock, VirtualClock):
            self._clock.subscribe(self._change_notices.changed)
            self._clock.subscribe(self._work_notices.changed)

    def _new_rules(self) -> _core.Rules:
        # Seeded from the OS: processes sharing the store draw different tokens and versions.
        return _core.Rules(secrets.randbits(64), *self._retry_ms)

    # Deciding: the requests of one event-loop pass go to the rules in one call.

    def _decide(self, request: _core.RuleRequest) -> asyncio.Future[_core.Decision]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_core.Decision] = loop.create_future()
        self._pending.append((request, future))
        if not self._deciding:
            self._deciding = True
            loop.call_soon(self._decide_pending)
        return future

    def _decide_pending(self) -> None:
        self._deciding = False
        group, self._pending = self._pending, []
        if os.getpid() != self._rules_process:
            # A forked child would draw its parent's tokens and versions: a seed of its own.
            self._rules, self._rules_process = self._new_rules(), os.getpid()
        try:
            outcomes = self._rules.decide(self.now_ms(), [request for request, _ in group])
        except Exception as error:
            outcomes = [error] * len(group)
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _apply(
        self, load: _Loaded, follow_up: bool = False, known_run: int | None = None
    ) -> tuple[int, list[_core.Decision]]:
        """Loads, decides and persists one operation; decided again (loaded afresh) when its
        write conflicts. With ``follow_up``, the activities a commit cancels are loaded and
        cancelled in the same write. ``known_run``: the run whose remembered records the
        load may use; refused on them, the operation is decided again on records read.
        Returns the run's key and the decisions persisted."""
        for attempt in range(CONFLICT_RETRIES):
            run_key: int | None = known_run
            try:
                async with self.tables.operation():
                    run_key, request = await load(attempt == 0 and known_run is not None)
                    decision = await self._decide(request)
                    decisions = [decision]
                    if follow_up and decision.run is not None:
                        decisions += await self._cancellations(decision)
                    if decision.is_empty:
                        return run_key or 0, decisions
                    if len(decisions) == 1:
                        key = await self.tables.persist(run_key, decision, self.identity)
                    else:
                        keys = await self.tables.persist_all(
                            [(run_key, d) for d in decisions], self.identity
                        )
                        key = keys[0]
            except (StaleTaskError, InvalidCommandError):
                # Perhaps decided on remembered records another writer has since moved on:
                # the rules refused the operation on them; on records read it may stand.
                if attempt == 0 and known_run is not None:
                    self._known.forget(known_run)
                    continue
                raise
            except StorageConflictError:
                # Another writer changed a record after it was read (or the rules decided on
                # what another request of the group left, which may not be stored): again,
                # after a random pause that grows, so two writers that keep meeting (a commit
                # and a stream of signals to its run) stop meeting in lockstep.
                self._known.forget(run_key)
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.0005 * 2**attempt))
                continue
            except CommitUnknownError as unknown:
                # The connection dropped after the commit was sent: whether it landed is read
                # back (then the operation succeeded, its leases included) or it fails as not
                # committed, so nothing it leased waits out a timeout unseen.
                self._known.forget(run_key)
                key = await landed(self.tables, run_key, decisions, unknown)
            else:
                self._known.remember(key, decisions)
            self._change_notices.changed()
            if any(decision.wakes_pollers for decision in decisions):
                self._work_notices.changed()
            self._announce_closes(decisions)
            return key, decisions
        raise AssertionError("unreachable")

    def run_closed(self, run_id: str, closing_row: bytes | None = None) -> None:
        """Wakes whoever waits for run ``run_id`` to close (it did, or may have), with its
        closing event's row when this process wrote it (then nobody reads it back)."""
        for future in self._close_waiters.pop(run_id, ()):
            if not future.done():
                future.set_result(closing_row)

    def _announce_closes(self, decisions: Sequence[_core.Decision]) -> None:
        for decision in decisions:
            run = decision.run
            if decision.closed and run is not None:
                # The run's last event is its closing one: the history ends there.
                last = decision.events[-1] if decision.events else None
                row = last[2] if last is not None and last[0] == run.history_length else None
                self.run_closed(run.run_id, row)

    def _close_notice(self, run_id: str) -> asyncio.Future[bytes | None]:
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._close_waiters.setdefault(run_id, []).append(future)
        return future

    async def _cancellations(self, decision: _core.Decision) -> list[_core.Decision]:
        """The cancellations a commit names, decided in order on the run as it left it."""
        cancels: list[_core.Decision] = []
        run = decision.run
        for scheduled_event_id in decision.activities_to_cancel:
            assert run is not None
            activity = await self.tables.activity(run.key, scheduled_event_id)
            if activity is None:
                continue  # its result came first
            cancel = await self._decide(_core.RuleRequest.cancel_activity(run, activity))
            cancels.append(cancel)
            run = cancel.run
        return cancels

    async def _run(self, run_key: int) -> _core.RunRecord:
        run = await self.tables.run(run_key)
        if run is None:
            raise StaleTaskError(f"run {run_key} is gone")
        return run

    async def _current_run(self, workflow_id: str) -> _core.RunRecord:
        from ..errors import WorkflowNotFoundError

        run = await self.tables.current_run(workflow_id)
        if run is None:
            raise WorkflowNotFoundError(f"workflow not found: {workflow_id}")
        return run

    async def _known_run(self, run_key: int, known: bool) -> _core.RunRecord:
        """The run as this object last wrote it (with ``known``), else as stored."""
        remembered = self._known.run(run_key) if known else None
        return remembered or await self._run(run_key)

    async def _held(
        self, task: ActivityTask, known: bool
    ) -> tuple[_core.RunRecord, _core.ActivityRecord]:
        """The attempt's run and activity as this object last wrote them (with ``known``),
        else as stored."""
        remembered = self._known.held(task.run_key, task.scheduled_event_id) if known else None
        if remembered is not None:
            return remembered
        # Both at once: a store that batches reads reads them together.
        activity, run = await asyncio.gather(
            self.tables.activity(task.run_key, task.scheduled_event_id),
            self.tables.run(task.run_key),
        )
        if activity is None:
            raise StaleTaskError(f"activity attempt {task.token} is over")
        if run is None:
            raise StaleTaskError(f"run {task.run_key} is gone")
        return run, activity

    async def _workflow_task(self, record: _core.RunRecord) -> WorkflowTask | None:
        rows = await self.tables.event_rows(record.key, record.tail_start, record.history_length)
        lease: WorkflowLeaseTuple | None = record.workflow_lease(_core.join_rows(rows))
        if lease is None:
            return None
        key, workflow_id, run_id, workflow_type, length, token, tail_from, tail = lease
        return WorkflowTask(workflow_id, run_id, workflow_type, length, token, key, tail_from, tail)

    def remember(self, run_key: int, decisions: Sequence[_core.Decision]) -> None:
        """A store's own write of decisions about run ``run_key`` (a claim's leases)
        committed: the next step of the run is decided on what they left."""
        self._known.remember(run_key, decisions)

    def _committed(
        self, run: _core.RunRecord, decisions: Sequence[_core.Decision], eager_queue: str | None
    ) -> CommittedTask:
        """What a commit gives back; `run` the run as stored (its key is the store's)."""
        commit = decisions[0]
        leases = []
        for record in commit.leased_activities:
            lease = record.lease(run)
            if lease is not None:
                leases.append(activity_task(lease, eager_queue or ""))
        return CommittedTask(leases, commit.task_history_length, commit.task_events())

    # Client side.

    async def start_workflow(
        self,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        input: bytes,
        *,
        eager_lease_ms: int | None = None,
    ) -> WorkflowTask | None:
        async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
            request = _core.RuleRequest.start_workflow(
                workflow_id, run_id, workflow_type, task_queue, input, eager_lease_ms
            )
            return None, request

        key, (decision,) = await self._apply(load)
        if not decision.leased:
            return None
        return await self._workflow_task(await self._run(key))

    async def start_workflow_with_first_task(
        self,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        input: bytes,
        started_event: bytes,
        outcome: bytes,
        *,
        eager_activity_queue: str | None = None,
        eager_activity_slots: int = 0,
        eager_slots: ActivitySlots | None = None,
    ) -> CommittedTask:
        # Slots are taken while the operation's reads, decision and write go on.
        with SlotHold(eager_slots, eager_activity_slots) as hold:

            async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
                request = _core.RuleRequest.start_workflow_with_first_task(
                    workflow_id,
                    run_id,
                    workflow_type,
                    task_queue,
                    started_event,
                    outcome,
                    eager_activity_queue,
                    hold.granted,
                )
                return None, request

            key, decisions = await self._apply(load)
            # The run as stored is the run as decided, under the key the store gave it (no
            # read back).
            decided = _last_run(decisions).row()
            run = _core.RunRecord.from_row((key, *decided[1:]))
            committed = self._committed(run, decisions, eager_activity_queue)
            hold.keep(len(committed.activities))
            return committed

    async def _on_current_run(
        self, workflow_id: str, make: Callable[[_core.RunRecord], _core.RuleRequest]
    ) -> list[_core.Decision]:
        async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
            run = await self._current_run(workflow_id)
            return run.key, make(run)

        return (await self._apply(load))[1]

    async def signal_workflow(self, workflow_id: str, signal_name: str, input: bytes) -> None:
        await self._on_current_run(
            workflow_id, lambda run: _core.RuleRequest.signal_workflow(run, signal_name, input)
        )

    async def request_cancel_workflow(self, workflow_id: str, reason: str) -> None:
        await self._on_current_run(
            workflow_id, lambda run: _core.RuleRequest.request_cancel_workflow(run, reason)
        )

    async def terminate_workflow(self, workflow_id: str, reason: str) -> None:
        await self._on_current_run(
            workflow_id, lambda run: _core.RuleRequest.terminate_workflow(run, reason)
        )

    async def describe_workflow(self, workflow_id: str) -> WorkflowDescription:
        run = await self._current_run(workflow_id)
        row = run.summary()
        holder = await self.tables.lease_identity(run.key) if row[10][2] else None
        return description_from_row(row, holder)

    async def list_workflows(
        self,
        *,
        after_run_key: int | None = None,
        page_size: int,
        status: str | None = None,
        workflow_type: str | None = None,
    ) -> WorkflowPage:
        runs = await self.tables.list_runs(after_run_key, page_size, status, workflow_type)
        return page_from_rows([run.summary() for run in runs], page_size)

    async def read_history(self, workflow_id: str, run_id: str, from_event_id: int = 1) -> bytes:
        from ..errors import WorkflowNotFoundError

        run = await self.tables.run_by_id(run_id)
        if run is None:
            raise WorkflowNotFoundError(f"run not found: {run_id}")
        rows = await self.tables.event_rows(run.key, from_event_id, run.history_length)
        return _core.join_rows(rows)

    async def wait_closed(self, workflow_id: str, run_id: str, timeout: float | None) -> bytes:
        from ..errors import WorkflowNotFoundError

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # Taken before the read, so a close in between is not missed; woken by this run's
            # close only (or, as a backstop, a poll interval).
            closing = self._close_notice(run_id)
            try:
                run = await self.tables.run_by_id(run_id)
                if run is None:
                    raise WorkflowNotFoundError(f"run not found: {run_id}")
                if not run.is_running:
                    length = run.history_length
                    return _core.join_rows(await self.tables.event_rows(run.key, length, length))
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"workflow {workflow_id} did not close within {timeout} s")
                await self._wait(closing, remaining)
                if closing.done() and not closing.cancelled():
                    closing_row = closing.result()
                    if closing_row is not None:  # closed by this process: its closing event
                        return _core.join_rows([closing_row])
            finally:
                self._forget(run_id, closing)

    def _forget(self, run_id: str, closing: asyncio.Future[bytes | None]) -> None:
        waiters = self._close_waiters.get(run_id)
        if waiters is not None and closing in waiters:
            waiters.remove(closing)
            if not waiters:
                del self._close_waiters[run_id]

    async def _wait(self, changed: asyncio.Future[Any], timeout: float | None) -> None:
        """Waits for a change made here, at most `timeout` and at most one poll interval
        (other processes' changes wake nobody here)."""
        wait = self._poll_seconds if timeout is None else min(timeout, self._poll_seconds)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed, max(wait, 0.0))

    async def query_workflow(
        self, workflow_id: str, query_name: str, input: bytes, timeout: float
    ) -> bytes:
        run = await self._current_run(workflow_id)
        query_id = await self.tables.submit_query(self.now_ms(), run, query_name, input)
        self._change_notices.changed()
        self._work_notices.changed()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._change_notices.next()
            give_up = loop.time() >= deadline
            answer = await self.tables.read_answer(query_id, give_up)
            if answer is not None:
                result, error = answer
                if error is not None or result is None:
                    raise QueryFailedError(error or "query failed")
                return result
            if give_up:
                raise QueryFailedError(
                    f"no worker answered query {query_name!r} within {timeout} s"
                )
            await self._wait(changed, deadline - loop.time())

    # Worker side.

    async def _tick(self) -> int:
        """Applies the deadlines due now, at most the rules' ``tick_batch`` of them (so one
        tick stays short); returns how many took effect. Each is applied, or found applied by
        another writer, before this returns: the poll after a tick sees what it did. (One
        whose every retry met other writers waits, with its run's later ones, for the next
        tick.)"""
        dues = await self.tables.due(self.now_ms(), self._rules.tick_batch)
        if not dues:
            return 0
        # Runs side by side; one run's deadlines one after another, earliest first (two
        # timers due at once fire in the order they are due).
        by_run: dict[int, list[Due]] = {}
        for due in dues:
            by_run.setdefault(due.run_key, []).append(due)
        outcomes = await asyncio.gather(
            *(self._apply_dues(run) for run in by_run.values()), return_exceptions=True
        )
        applied = sum(outcome for outcome in outcomes if isinstance(outcome, int))
        if applied:
            self._change_notices.changed()
            self._work_notices.changed()
        # Every run's are done (or failed) before a failure (the storage down) is reported.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return applied

    async def _apply_dues(self, dues: list[Due]) -> int:
        """One run's due deadlines, in order. One that kept meeting other writers (every
        retry refused) stops the run's others, so none is applied before it: the next tick
        takes them up again."""
        applied = 0
        for due in dues:
            try:
                applied += await self._apply_due(due)
            except StorageConflictError:
                break
        return applied

    async def _apply_due(self, due: Due) -> bool:
        """Applies one due deadline; False when nothing was left to apply (another writer
        applied it); StorageConflictError when every retry met another writer. A write that
        conflicts is decided again on records read afresh, like
        any operation's: a tick that took a conflict for "done elsewhere" could return while
        the write that does it (a poller's tick beside this one) is still on its way, and the
        poll after it lease a task without the timer that fired for it."""

        async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
            run = await self._run(due.run_key)
            if due.kind == "timer":
                fire_at = await self.tables.timer(due.run_key, due.item)
                if fire_at is None:
                    raise StaleTaskError("the timer is gone")
                return run.key, _core.RuleRequest.fire_timer(run, due.item, fire_at)
            if due.kind == "lease":
                return run.key, _core.RuleRequest.expire_workflow_task_lease(run)
            activity = await self.tables.activity(due.run_key, due.item)
            if activity is None:
                raise StaleTaskError("the activity is over")
            return run.key, _core.RuleRequest.apply_activity_deadline(run, activity)

        try:
            _, decisions = await self._apply(load)
        except StaleTaskError:
            return False
        return not decisions[0].is_empty

    async def _persist_lease(self, run_key: int, decision: _core.Decision) -> bool:
        """Writes a poll's lease, remembered once written; False when another writer's came
        first (nothing to retry: the candidate is no longer this poll's)."""
        try:
            await self.tables.persist(run_key, decision, self.identity)
        except StorageConflictError:
            self._known.forget(run_key)
            return False
        self._known.remember(run_key, [decision])
        return True

    async def poll_workflow_tasks(
        self, task_queue: str, lease_ms: int, max_tasks: int
    ) -> list[WorkflowTask]:
        await self._tick()
        candidates = await self.tables.ready_workflow_tasks(task_queue, self.now_ms(), max_tasks)
        decisions = await asyncio.gather(
            *(self._decide(_core.RuleRequest.lease_workflow_task(run, lease_ms))
              for run in candidates),
            return_exceptions=True,
        )  # fmt: skip
        tasks: list[WorkflowTask] = []
        for run, decision in zip(candidates, decisions, strict=True):
            if isinstance(decision, BaseException):
                continue  # no longer leasable
            if not await self._persist_lease(run.key, decision):
                continue  # another worker took it
            task = await self._task_leased_by(decision)
            if task is not None:
                tasks.append(task)
        return tasks

    async def _task_leased_by(self, decision: _core.Decision) -> WorkflowTask | None:
        """The workflow task a lease decision (now persisted) hands out."""
        leased = decision.run
        assert leased is not None, "a lease changes its run"
        return await self._workflow_task(leased)

    async def complete_workflow_task(
        self,
        task: WorkflowTask,
        outcome: bytes | None,
        *,
        eager_activity_queue: str | None = None,
        eager_activity_slots: int = 0,
        eager_slots: ActivitySlots | None = None,
    ) -> CommittedTask:
        # Slots are taken while the operation's reads, decision and write go on.
        with SlotHold(eager_slots, eager_activity_slots) as hold:

            async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
                request = _core.RuleRequest.complete_workflow_task(
                    await self._known_run(task.run_key, known),
                    task.token,
                    outcome,
                    task.history_length,
                    eager_activity_queue,
                    hold.granted,
                )
                return task.run_key, request

            _, decisions = await self._apply(load, follow_up=True, known_run=task.run_key)
            committed = self._committed(_last_run(decisions), decisions, eager_activity_queue)
            hold.keep(len(committed.activities))
            return committed

    async def fail_workflow_task(self, task: WorkflowTask, message: str) -> None:
        async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
            run = await self._known_run(task.run_key, known)
            return task.run_key, _core.RuleRequest.fail_workflow_task(run, task.token, message)

        await self._apply(load, known_run=task.run_key)

    async def poll_activity_tasks(
        self, task_queue: str, max_tasks: int, *, slots: ActivitySlots | None = None
    ) -> list[ActivityTask]:
        # Slots are taken while the poll's reads, decisions and writes go on.
        with SlotHold(slots, max_tasks) as hold:
            await self._tick()
            candidates = await self.tables.ready_activity_tasks(
                task_queue, self.now_ms(), hold.granted
            )
            decisions = await asyncio.gather(
                *(self._decide(_core.RuleRequest.lease_activity_task(run, activity))
                  for run, activity in candidates),
                return_exceptions=True,
            )  # fmt: skip
            tasks: list[ActivityTask] = []
            for (run, _), decision in zip(candidates, decisions, strict=True):
                if isinstance(decision, BaseException):
                    continue
                if not await self._persist_lease(run.key, decision):
                    continue
                tasks += attempts_leased(run, decision, task_queue)
            hold.keep(len(tasks))
            return tasks

    async def complete_activity_task(
        self, task: ActivityTask, result: bytes, *, eager_workflow_lease_ms: int | None = None
    ) -> WorkflowTask | None:
        eager_queue = None if eager_workflow_lease_ms is None else task.task_queue

        async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
            run, activity = await self._held(task, known)
            request = _core.RuleRequest.complete_activity_task(
                run, activity, task.token, result, eager_queue, eager_workflow_lease_ms or 0
            )
            return run.key, request

        _, (decision,) = await self._apply(load, known_run=task.run_key)
        if not decision.leased or decision.run is None:
            return None
        return await self._workflow_task(decision.run)

    async def complete_activity_with_workflow_task(
        self,
        task: ActivityTask,
        result: bytes,
        result_event: bytes,
        history_length: int,
        outcome: bytes,
        *,
        eager_activity_queue: str | None = None,
        eager_activity_slots: int = 0,
        eager_slots: ActivitySlots | None = None,
    ) -> CommittedTask | None:
        # Slots are taken while the operation's reads, decision and write go on.
        with SlotHold(eager_slots, eager_activity_slots) as hold:

            async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
                run, activity = await self._held(task, known)
                request = _core.RuleRequest.complete_activity_with_workflow_task(
                    run,
                    activity,
                    task.token,
                    result_event,
                    history_length,
                    outcome,
                    eager_activity_queue,
                    hold.granted,
                )
                return run.key, request

            _, decisions = await self._apply(load, follow_up=True, known_run=task.run_key)
            if not decisions[0].fused:
                return None
            committed = self._committed(_last_run(decisions), decisions, eager_activity_queue)
            hold.keep(len(committed.activities))
            return committed

    async def fail_activity_task(self, task: ActivityTask, failure: FailureTuple) -> None:
        async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
            run, activity = await self._held(task, known)
            return run.key, _core.RuleRequest.fail_activity_task(run, activity, task.token, failure)

        await self._apply(load, known_run=task.run_key)

    async def heartbeat_activity_task(self, task: ActivityTask, details: bytes) -> None:
        async def load(known: bool) -> tuple[int | None, _core.RuleRequest]:
            run, activity = await self._held(task, known)
            request = _core.RuleRequest.heartbeat_activity_task(run, activity, task.token, details)
            return run.key, request

        await self._apply(load, known_run=task.run_key)

    async def poll_query(self, task_queue: str) -> QueryTask | None:
        return await self.tables.take_query(task_queue)

    async def answer_query(self, query: QueryTask, result: bytes | None, error: str | None) -> None:
        assert isinstance(query.handle, int)
        await self.tables.answer_query(query.handle, result, error)
        self._change_notices.changed()

    async def wait_for_work(self, task_queue: str, timeout: float | None) -> None:
        changed = self._work_notices.next()
        now = self.now_ms()
        wakeup = await self.tables.next_wakeup_ms(now, task_queue)
        if wakeup is not None and wakeup <= now:
            return
        if wakeup is not None and not self._clock.is_virtual:
            until_wakeup = (wakeup - now) / 1000
            timeout = until_wakeup if timeout is None else min(timeout, until_wakeup)
        await self._wait(changed, timeout)

    async def skip_to_next_wakeup(self) -> bool:
        """With a :class:`VirtualClock`: if nothing is ready or running, moves the clock to
        the next timer or timeout (see :func:`mainspring.testing.time_skipping`)."""
        clock = self._clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("time skipping needs a VirtualClock")
        now = clock.now_ms()
        busy, wakeup = await self.tables.busy_and_wakeup(now)
        if busy or wakeup is None or wakeup <= now:
            return False
        clock.advance((wakeup - now) / 1000)
        return True

    def wait_for_change(self) -> asyncio.Future[None]:
        return self._change_notices.next()

    async def close(self) -> None:
        self._change_notices.changed()
        self._work_notices.changed()

    def notice_from_elsewhere(self) -> None:
        """Another process changed the store (a notification said so): wake everyone."""
        self._change_notices.changed()
        self._work_notices.changed()

    def wake_every_waiter(self) -> None:
        """Notices from other processes may have been lost: every waiter looks again, those
        waiting for a run to close included."""
        self.notice_from_elsewhere()
        for run_id in list(self._close_waiters):
            self.run_closed(run_id)


def attempts_leased(
    run: _core.RunRecord, decision: _core.Decision, task_queue: str
) -> list[ActivityTask]:
    """The activity attempts a lease decision (now persisted) hands out on run ``run``."""
    tasks = []
    for write, _, _, record in decision.activities:
        lease = None if record is None or write != "update" else record.lease(run)
        if lease is not None:
            tasks.append(activity_task(lease, task_queue))
    return tasks


def _last_run(decisions: Sequence[_core.Decision]) -> _core.RunRecord:
    """The run as the last of an operation's decisions left it."""
    run = decisions[-1].run or decisions[0].run
    assert run is not None, "a commit changes its run"
    return run
