"""Group commit for the PostgreSQL store: the operations that begin in one pass of the event
loop (a worker's many commits, a service's many starts) run as one group. Their reads of runs
and of activities are batched, one statement per pass for all of them; their writes wait until
every member has decided, then go as one statement (`_group_write.py`) that is its own
transaction: one round trip and one WAL flush carry many workflows' steps.

Reads take no locks: each member's write is fenced by compare-and-set on the versions its
decisions name, as an operation's write always is. A member the fence refuses (another group
or process changed its run first, or two members of the group decided on one run) gets
StorageConflictError, and the adapter decides it again on fresh records; the rest commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg

from ... import _core
from ...errors import (
    MainspringError,
    StorageConflictError,
    StorageError,
    WorkflowAlreadyStartedError,
)
from . import _group_reads as group_reads
from ._errors import CONNECTION_LOST, commit_unknown, lost, server_process
from ._group_write import pack

ResultT = TypeVar("ResultT")

#: Members a group takes at most; more start the next group.
MAXIMUM_MEMBERS = 512

#: Runs one has a connection do something: (what is being done, the call).
Use = Callable[[str, Callable[[Any], Awaitable[Any]]], Awaitable[Any]]


class Write:
    """One member's writes: its decisions (all of one run), and the future its persist waits
    on (the run's key once committed)."""

    __slots__ = ("decisions", "future", "identity", "run_key")

    def __init__(self, run_key: int | None, decisions: list[_core.Decision], identity: str) -> None:
        self.run_key = run_key
        self.decisions = decisions
        self.identity = identity  # who holds a lease the write makes
        self.future: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class Group:
    def __init__(
        self,
        use: Use,
        statements: dict[str, str],
        notice: Callable[[Sequence[_core.Decision]], tuple[str, list[str]]],
        group_statement: Callable[[frozenset[str]], str],
    ) -> None:
        self.use = use
        self._group_statement = group_statement
        self._statements = statements
        self._notice = notice
        self.open = True
        self.members = 0
        self._settled = 0  # members that left or handed in their write
        self._runs: dict[int, list[asyncio.Future[Any]]] = {}
        self._activities: dict[tuple[int, int], list[asyncio.Future[Any]]] = {}
        self._reading = False
        self._writes: list[Write] = []
        self._finishing = False

    def join(self) -> None:
        if self.members == 0:
            # A group is what began in one pass: later operations start the next group, so a
            # steady stream of calls never keeps one group's writes waiting.
            asyncio.get_running_loop().call_soon(self._close_to_new_members)
        self.members += 1
        if self.members >= MAXIMUM_MEMBERS:
            self.open = False

    def _close_to_new_members(self) -> None:
        self.open = False

    # Batched reads: the keys asked for in one pass, read by one statement.

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
        statements = self._statements
        try:
            if activities:
                # With their runs: a member that reads an activity reads its run too (and a
                # run is found this way even if its activity is gone).
                rows = await self.use(
                    "read activities", lambda c: group_reads.activities(c, statements, activities)
                )
                found_runs = {row[0]: _core.RunRecord.from_row(row[:19]) for row in rows}
                found = {
                    (row[0], row[19]): _core.ActivityRecord.from_row(row[19:])
                    for row in rows
                    if row[19] is not None
                }
                _resolve(activities, found)
                covered = {key: runs.pop(key) for key in list(runs) if key in found_runs}
                _resolve(covered, found_runs)
            if runs:
                rows = await self.use("read runs", lambda c: group_reads.runs(c, statements, runs))
                _resolve(runs, {row[0]: _core.RunRecord.from_row(row) for row in rows})
        except BaseException as error:
            for pending in (runs, activities):
                for futures in pending.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)

    # Writes: held until every member has decided, then written together.

    async def persist(
        self, run_key: int | None, decisions: list[_core.Decision], identity: str
    ) -> int:
        write = Write(run_key, decisions, identity)
        self._writes.append(write)
        self._settle()
        return await write.future

    def leave(self) -> None:
        """A member is done without a write (it decided nothing, or failed)."""
        self._settle()

    def _settle(self) -> None:
        # Every member settles once: by handing in its write, or by leaving without one.
        self._settled += 1
        if self._settled == self.members and not self._finishing:
            self.open = False
            self._finishing = True
            _in_background(self._finish())

    async def _finish(self) -> None:
        writes = self._accepted_alone(self._writes)
        if not writes:
            return
        try:
            accepted = await self._write(writes)
        except BaseException as error:
            failure = as_storage_error(error)
            for write in writes:
                if not write.future.done():
                    write.future.set_exception(failure)
            return
        for member, write in enumerate(writes):
            key = accepted.get(member)
            if key is not None:
                write.future.set_result(key)
            else:
                write.future.set_exception(refusal(write))

    def _accepted_alone(self, writes: list[Write]) -> list[Write]:
        """The writes that may go together: of two members deciding on one run, the later is
        refused now (it read what the earlier is about to change)."""
        seen: set[int] = set()
        kept = []
        for write in writes:
            key = write.run_key
            if key is not None and key in seen:
                write.future.set_exception(
                    StorageConflictError(f"run {key} is written by another operation of the group")
                )
                continue
            if key is not None:
                seen.add(key)
            kept.append(write)
        return kept

    async def _write(self, writes: list[Write]) -> dict[int, int]:
        """Writes the group (one statement, its own commit); returns the accepted members'
        run keys, by member."""
        channel, payloads = self._notice([d for write in writes for d in write.decisions])

        async def write(connection: Any) -> dict[int, int]:
            process = server_process(connection)
            try:
                return await write_members(
                    connection, self._statements, self._group_statement, writes, channel, payloads
                )
            except CONNECTION_LOST as error:
                # Sent, the statement (or the commit) may have committed.
                lost(connection)
                raise commit_unknown("a group commit", error, process) from error

        accepted: dict[int, int] = await self.use("write a group of decisions", write)
        return accepted


async def write_members(
    connection: Any,
    statements: dict[str, str],
    group_statement: Callable[[frozenset[str]], str],
    writes: list[Write],
    channel: str,
    payloads: list[str],
) -> dict[int, int]:
    """The members' writes as one statement on ``connection`` (`_group_write.py`), and the
    closes of new runs their first task closed in the same transaction; returns the accepted
    members' run keys, by member. Every PostgreSQL write of the store goes through here: a
    group's, a claim's (inside its transaction) and one made outside any group."""
    packed = pack(writes)
    arguments = packed.arguments(channel, payloads)
    statement = group_statement(packed.present)
    if not packed.closing:
        row = await connection.fetchrow(statement, *arguments)  # its own commit, or the caller's
        return dict(zip(row[1] or [], row[2] or [], strict=True))
    # New runs their first task closes were inserted open (so the unique index fenced them):
    # closed in the same transaction (a savepoint inside a caller's).
    async with connection.transaction():
        row = await connection.fetchrow(statement, *arguments)
        keys = dict(zip(row[1] or [], row[2] or [], strict=True))
        closing = [(keys[m], status) for m, status in packed.closing if m in keys]
        if closing:
            await connection.execute(
                statements["CLOSE_NEW_RUNS"], [key for key, _ in closing], [s for _, s in closing]
            )
    return keys


def refusal(write: Write) -> MainspringError:
    """What a member the fence did not accept is told: a new run whose id has an open run is
    already started; any other write met a record changed since it was read."""
    if write.decisions[0].inserts_run:
        run = write.decisions[-1].run or write.decisions[0].run
        workflow_id = "" if run is None else run.workflow_id
        return WorkflowAlreadyStartedError(f"workflow already started: {workflow_id}")
    return StorageConflictError(f"run {write.run_key} changed since it was read")


def as_storage_error(error: BaseException) -> BaseException:
    if isinstance(error, MainspringError):
        cause = error.__cause__
        if isinstance(cause, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
            return StorageConflictError(f"PostgreSQL refused the group's write: {cause}")
        if isinstance(cause, asyncpg.UniqueViolationError):
            return StorageConflictError(f"a record of the group exists already: {cause}")
        return error
    return StorageError(f"PostgreSQL failed to write a group of decisions: {error}")


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


__all__ = ["MAXIMUM_MEMBERS", "Group", "Write", "as_storage_error", "refusal", "write_members"]
