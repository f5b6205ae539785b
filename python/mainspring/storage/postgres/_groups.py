"""Group commit for the PostgreSQL store: the operations that begin in one pass of the event
loop (a worker's many commits, a service's many starts) run as one group, on one connection,
in one transaction. Their reads of runs and activities are batched, one statement per pass
(rows locked ``FOR UPDATE`` in key order); their writes wait until every member has decided,
then go as one round of batched statements (arrays through ``unnest``), one per table and
kind, and one commit. So a round trip, and a WAL flush, carry many workflows' steps.

A member's writes are fenced as one operation's are: compare-and-set on the versions its
decision names, and the unique index over open runs for a new run. A member refused by the
fence (another group or process got there first, or two members of the group decided on one
run) gets StorageConflictError and nothing of it is written; the rest commit. A fence that
fails after a member's run was written (an activity or timer changed by another process
meanwhile, which the locks make all but impossible) rolls the whole group back: every member
gets StorageConflictError, and the adapter decides each again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg

from ... import _core
from ...errors import (
    CommitUnknownError,
    MainspringError,
    StorageConflictError,
    WorkflowAlreadyStartedError,
)
from . import _batched as batched
from ._errors import CONNECTION_LOST, commit_unknown, translated

ResultT = TypeVar("ResultT")

#: Members a group takes at most; more wait for the next group.
MAXIMUM_MEMBERS = 256


class Write:
    """One member's writes: its decisions (all of one run), and the future its persist waits
    on (the run's key once committed)."""

    __slots__ = ("decisions", "future", "run_key")

    def __init__(self, run_key: int | None, decisions: list[_core.Decision]) -> None:
        self.run_key = run_key
        self.decisions = decisions
        self.future: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class Group:
    def __init__(
        self,
        acquire: Callable[[], Awaitable[Any]],
        release: Callable[[Any], Awaitable[None]],
        statements: dict[str, str],
        notify: Callable[[Any, Sequence[_core.Decision]], Awaitable[None]],
    ) -> None:
        self._acquire = acquire
        self._release = release
        self._statements = statements
        self._notify = notify
        self.open = True
        self.members = 0
        self._settled = 0  # members that left or wait for their write
        self._connection: Any = None
        self._transaction: Any = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._runs: dict[int, list[asyncio.Future[Any]]] = {}
        self._activities: dict[tuple[int, int], list[asyncio.Future[Any]]] = {}
        self._reading = False
        self._writes: list[Write] = []
        self._finishing = False

    def join(self) -> None:
        self.members += 1
        if self.members >= MAXIMUM_MEMBERS:
            self.open = False

    # The connection, made on first use.

    async def _begun(self) -> Any:
        if self._connection is None:
            self.open = False  # later operations start a group of their own
            connection = await self._acquire()
            try:
                transaction = connection.transaction()
                await transaction.start()
            except BaseException:
                await self._release(connection)
                raise
            self._connection, self._transaction = connection, transaction
        return self._connection

    async def use(self, what: str, call: Callable[[Any], Awaitable[ResultT]]) -> ResultT:
        """Runs ``call`` on the group's connection, in its transaction, alone."""
        async with self._lock, translated(what):
            return await call(await self._begun())

    # Batched reads: the keys asked for in one pass, read (and locked) by one statement.

    def run(self, run_key: int) -> asyncio.Future[Any]:
        return self._ask(self._runs, run_key)

    def activity(self, run_key: int, scheduled_event_id: int) -> asyncio.Future[Any]:
        return self._ask(self._activities, (run_key, scheduled_event_id))

    def _ask(self, pending: dict[Any, list[asyncio.Future[Any]]], key: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending.setdefault(key, []).append(future)
        if not self._reading:
            self._reading = True
            asyncio.get_running_loop().call_soon(self._read_soon)
        return future

    def _read_soon(self) -> None:
        _in_background(self._read())

    async def _read(self) -> None:
        self._reading = False
        runs, self._runs = self._runs, {}
        activities, self._activities = self._activities, {}
        try:
            if runs:
                rows = await self.use(
                    "read runs", lambda c: batched.runs(c, self._statements, runs)
                )
                _resolve(runs, {row[0]: _core.RunRecord.from_row(row) for row in rows})
            if activities:
                rows = await self.use(
                    "read activities",
                    lambda c: batched.activities(c, self._statements, activities),
                )
                _resolve(
                    activities,
                    {(row[0], row[1]): _core.ActivityRecord.from_row(row[1:]) for row in rows},
                )
        except BaseException as error:
            for pending in (runs, activities):
                for futures in pending.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)

    # Writes: held until every member has decided, then written together.

    async def persist(self, run_key: int | None, decisions: list[_core.Decision]) -> int:
        write = Write(run_key, decisions)
        self._writes.append(write)
        self._settle()
        return await write.future

    def leave(self) -> None:
        """A member is done (its write committed, or it wrote nothing)."""
        self._settle()

    def _settle(self) -> None:
        # Every member settles once: by handing in its write, or by leaving without one.
        self._settled += 1
        if self._settled == self.members and not self._finishing:
            self.open = False
            self._finishing = True
            _in_background(self._finish())

    async def _finish(self) -> None:
        writes = self._writes
        try:
            if writes:
                await self._write_all(writes)
        except BaseException as error:
            await self._end(commit=False)
            for write in writes:
                if not write.future.done():
                    write.future.set_exception(
                        error if isinstance(error, MainspringError) else _storage_error(error)
                    )
            return
        try:
            committed = await self._end(commit=bool(writes))
        except CommitUnknownError as unknown:
            for write in writes:
                if not write.future.done():
                    write.future.set_exception(unknown)
            return
        del committed
        for write in writes:
            if not write.future.done():
                assert write.run_key is not None
                write.future.set_result(write.run_key)

    async def _end(self, commit: bool) -> bool:
        connection, transaction = self._connection, self._transaction
        if connection is None:
            return False
        try:
            if commit:
                try:
                    await transaction.commit()
                except CONNECTION_LOST as error:
                    raise commit_unknown("a group commit", error) from error
            else:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
        finally:
            await self._release(connection)
        return commit

    async def _write_all(self, writes: list[Write]) -> None:
        """Writes every member that the fence lets through; refuses the rest (their futures
        get the refusal; nothing of theirs is written)."""
        seen: set[int] = set()
        accepted: list[Write] = []
        for write in writes:
            key = write.run_key
            if key is not None and key in seen:
                write.future.set_exception(
                    StorageConflictError(f"run {key} is written by another operation of the group")
                )
                continue
            if key is not None:
                seen.add(key)
            accepted.append(write)

        async def run(connection: Any) -> None:
            statements = self._statements
            refused = await batched.insert_runs(connection, statements, accepted)
            for write, error in refused:
                write.future.set_exception(error)
            survivors = [write for write in accepted if not write.future.done()]
            refused = await batched.update_runs(connection, statements, survivors)
            for write, error in refused:
                write.future.set_exception(error)
            survivors = [write for write in survivors if not write.future.done()]
            await batched.write_the_rest(connection, statements, survivors)
            await self._notify(
                connection, [decision for write in survivors for decision in write.decisions]
            )

        await self.use("persist a group of decisions", run)


#: Tasks of groups running in the background, held so they are not collected mid-way (and
#: not by the group, so a finished group is freed by reference counting, with no cycle).
_BACKGROUND: set[asyncio.Task[None]] = set()


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _resolve(pending: dict[Any, list[asyncio.Future[Any]]], found: dict[Any, Any]) -> None:
    for key, futures in pending.items():
        for future in futures:
            if not future.done():
                future.set_result(found.get(key))


def _storage_error(error: BaseException) -> BaseException:
    from ...errors import StorageError

    if isinstance(error, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        return StorageConflictError(f"PostgreSQL: {error}")
    return StorageError(f"PostgreSQL failed to write a group of decisions: {error}")


__all__ = ["MAXIMUM_MEMBERS", "Group", "WorkflowAlreadyStartedError"]
