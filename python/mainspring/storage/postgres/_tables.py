"""The PostgreSQL store's tables on asyncpg: `mainspring.storage._adapter.StoreTables` (reads,
and one fenced write per decision) plus the locked claims its polls use. No rule is written
here: what a write holds is what the core's rules decided; this module loads, persists with
compare-and-set on the versions the decision names, and fences."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from ... import _core
from ...errors import (
    CommitUnknownError,
    StorageError,
)
from ..base import QueryTask
from . import _group_write as group_write
from . import _schema
from . import _statements as sql
from ._errors import CONNECTION_LOST, commit_unknown, lost, server_process, translated
from ._groups import Group, Write, as_storage_error, refusal, write_members
from ._listener import Listener
from ._read_batches import Batched

#: Decides a claim's candidates (the caller's rules); an exception for each it may not take.
Decide = Callable[[list[Any]], Awaitable[list["_core.Decision | BaseException"]]]

_KIND = {0: "timer", 1: "lease", 2: "activity"}

#: Connections pooled at least: a client's and one worker's at its defaults (3 + 3 + 2); small
#: enough that about ten processes fit PostgreSQL's default ``max_connections`` (100, 3 of
#: them reserved).
DEFAULT_POOL_SIZE = 8
#: What the pool holds beside its workers' (a client's starts, result() reads, describes).
CLIENT_CONNECTIONS = 3
#: A worker's commit groups in flight besides its pollers' claims: one reading, one writing.
GROUPS_IN_FLIGHT = 2


class PostgresTables:
    """The tables of one schema, through a pool of connections made on first use."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        pool_size: int | None,
        statement_cache_size: int,
        migrate: bool,
        listen: bool,
        notify_origin: str,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.channel = f"mainspring_{schema}"
        self._quoted = _schema.quoted_schema(schema)
        self._statements = {
            name: value.replace("{s}", self._quoted)
            for name, value in vars(sql).items()
            if name.isupper() and not name.startswith("_") and isinstance(value, str)
        }
        # None: sized from the workers running on the store (see `workers_changed`).
        self._fixed_pool_size = pool_size
        self._pool_size = pool_size or DEFAULT_POOL_SIZE
        self._workers_need = 0
        # Pools replaced by larger ones: each is closed once the last call using it (or
        # queued for one of its connections) is done with it.
        self._pool_users: dict[int, int] = {}
        self._retired: dict[int, asyncpg.Pool] = {}
        self._closing_pools: set[asyncio.Task[None]] = set()
        # When each of the pool's server processes started, by pid (see `settle_lost_write`).
        self._backend_starts: dict[int, Any] = {}
        self._statement_cache_size = statement_cache_size
        self._migrate = migrate
        self._origin = notify_origin
        self._listen = listen
        # Names the store's sessions in pg_stat_activity (and lets tests find them).
        self._server_settings = {"application_name": f"mainspring:{schema}"}
        #: Called when another process's commit may have made work (see `_listener.py`),
        #: and with a run's id when another process's commit closed it.
        self.on_notice: Callable[[], None] = lambda: None
        self.on_closed: Callable[[str], None] = lambda run_id: None
        #: Called when notifications may have been lost (the listener was away).
        self.on_gap: Callable[[], None] = lambda: None
        self.listener: Listener | None = None
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False
        #: The group operations that begin now join (see `operation`), and the membership
        #: of the operation the current task is in.
        self._group: Group | None = None
        self._runs_by_id: Batched[str] = Batched(self._read_runs_by_id)
        self._closing_rows: dict[tuple[int, int], bytes] = {}
        self._events_by_id: Batched[tuple[int, int]] = Batched(self._read_events)
        self._member: contextvars.ContextVar[_Member | None] = contextvars.ContextVar(
            f"mainspring_postgres_{id(self)}", default=None
        )

    def statement(self, name: str) -> str:
        return self._statements[name]

    # Connections.

    async def connect(self) -> asyncpg.Connection:
        """A connection of its own (not the pool's): the listener's, or a migration's."""
        async with translated("connect"):
            return await asyncpg.connect(
                self.dsn,
                statement_cache_size=self._statement_cache_size,
                server_settings=self._server_settings,
            )

    @property
    def pool_size(self) -> int:
        """Connections the pool holds at most (now, or once it is opened)."""
        return self._pool_size

    def workers_changed(self, pollers: int) -> None:
        """A worker of ``pollers`` pollers started on the store (a negative count: stopped).
        Each poller may hold a connection (a claim's transaction), and a worker's commit
        groups two more (one reading, one writing), beside the client's few. The pool is
        sized for the most that ran at once: a pool already open is replaced by a larger one
        at its next use (the old one closes once its connections are given back)."""
        if self._fixed_pool_size is not None:
            return
        step = pollers + GROUPS_IN_FLIGHT if pollers >= 0 else pollers - GROUPS_IN_FLIGHT
        self._workers_need = max(0, self._workers_need + step)
        self._pool_size = max(
            self._pool_size, DEFAULT_POOL_SIZE, CLIENT_CONNECTIONS + self._workers_need
        )

    async def _open(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is not None and pool.get_max_size() >= self._pool_size:
            return pool
        if self._closed:
            raise StorageError("the PostgreSQL storage is closed")
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                connection = await self.connect()
                try:
                    async with translated("migrate the schema"):
                        if self._migrate:
                            await _schema.migrate(connection, self.schema)
                        else:
                            version = await _schema.stored_version(connection, self.schema)
                            _schema.check_current(version, self.schema)
                finally:
                    await connection.close()
            elif self._pool.get_max_size() < self._pool_size:
                old, self._pool = self._pool, None
                self._retired[id(old)] = old
                if id(old) not in self._pool_users:
                    self._close_retired(old)
            if self._pool is None:
                if self._listen and self.listener is None:
                    listener = Listener(
                        self.connect,
                        self.channel,
                        self._origin,
                        lambda: self.on_notice(),
                        lambda run_id: self.on_closed(run_id),
                        lambda: self.on_gap(),
                    )
                    async with translated("LISTEN for other processes' changes"):
                        await listener.start()
                    self.listener = listener
                async with translated("open a pool of connections"):
                    pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        statement_cache_size=self._statement_cache_size,
                        server_settings=self._server_settings,
                        # A statement (or a commit) that gets no answer is given up on, as
                        # a dropped connection is: a half-open connection (a partition
                        # without a reset) would otherwise hang it for hours.
                        command_timeout=STATEMENT_TIMEOUT_SECONDS,
                        # The store leaves no session state behind (its advisory locks are
                        # transaction-scoped, its LISTEN is on its own connection): giving a
                        # connection back need not cost a reset's round trip.
                        reset=_no_reset,
                        # Behind pgbouncer a pid is the pooler's: nothing to end by it.
                        init=self._met_connection if self._listen else None,
                    )
                if self._closed:  # closed while the pool opened
                    await pool.close()
                    if self.listener is not None:
                        listener, self.listener = self.listener, None
                        await listener.close()
                    raise StorageError("the PostgreSQL storage is closed")
                self._pool = pool
        assert self._pool is not None
        return self._pool

    async def _met_connection(self, connection: asyncpg.Connection) -> None:
        """Each new pooled connection: when its server process started (a lost one's is
        ended by pid and that start, never another's that reused the pid)."""
        started = await connection.fetchval(self._statements["BACKEND_START"])
        self._backend_starts[connection.get_server_pid()] = started
        if len(self._backend_starts) > 4 * max(self._pool_size, 1):
            # Forget the oldest: a pool replaces connections as they drop.
            for pid in list(self._backend_starts)[: len(self._backend_starts) // 2]:
                del self._backend_starts[pid]

    @contextlib.asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        pool = await self._open()
        key = id(pool)
        self._pool_users[key] = self._pool_users.get(key, 0) + 1
        try:
            async with translated(what), _acquired(pool) as connection:
                yield connection
        finally:
            users = self._pool_users.pop(key) - 1
            if users:
                self._pool_users[key] = users
            elif key in self._retired:
                self._close_retired(pool)

    def _close_retired(self, pool: asyncpg.Pool) -> None:
        self._retired.pop(id(pool), None)
        closing = asyncio.ensure_future(_close_quietly(pool))
        self._closing_pools.add(closing)
        closing.add_done_callback(self._closing_pools.discard)

    @contextlib.asynccontextmanager
    async def operation(self) -> AsyncIterator[None]:
        """One operation as a member of a group (`_groups.py`): the operations that begin in
        one pass of the event loop have their reads of runs and activities batched and their
        writes made together, fenced each, in one statement that commits them all."""
        if self._member.get() is not None:
            yield
            return
        await self._open()
        group = self._group
        if group is None or not group.open:
            group = Group(self._use, self._statements, self._notice, self._group_statement)
            self._group = group
        group.join()
        member = _Member(group)
        token = self._member.set(member)
        try:
            yield
        finally:
            self._member.reset(token)
            if not member.persisted:
                group.leave()

    async def _use(self, what: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """``call`` on a connection of the pool (a statement outside any transaction)."""
        async with self._connection(what) as connection:
            return await call(connection)

    def _notice(self, decisions: Sequence[_core.Decision]) -> tuple[str, list[str]]:
        """The channel and the payloads a write notifies (none: nothing to say): the runs it
        closed, as many to a notification as its 8,000-byte payload holds, or that work was
        left."""
        closed = [d.run.run_id for d in decisions if d.closed and d.run is not None]
        payloads = [
            " ".join([self._origin, *closed[start : start + _CLOSED_PER_NOTICE]])
            for start in range(0, len(closed), _CLOSED_PER_NOTICE)
        ]
        if not payloads and any(decision.wakes_pollers for decision in decisions):
            payloads.append(self._origin)
        return self.channel, payloads

    def _group_statement(self, present: frozenset[str]) -> str:
        return group_write.statement(present).replace("{s}", self._quoted)

    def _in_group(self) -> Group | None:
        member = self._member.get()
        return None if member is None else member.group

    async def _fetch(self, what: str, statement: str, *arguments: Any) -> list[asyncpg.Record]:
        text = self._statements[statement]
        async with self._connection(what) as connection:
            found: list[asyncpg.Record] = await connection.fetch(text, *arguments)
            return found

    async def _fetchrow(self, what: str, statement: str, *arguments: Any) -> asyncpg.Record | None:
        rows = await self._fetch(what, statement, *arguments)
        return rows[0] if rows else None

    async def close(self) -> None:
        self._closed = True
        if self.listener is not None:
            listener, self.listener = self.listener, None
            await listener.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(*CONNECTION_LOST):
                await asyncio.wait_for(pool.close(), 5)
        for pool in list(self._retired.values()):  # replaced, still in use: closed now
            self._close_retired(pool)
        if self._closing_pools:
            await asyncio.wait(set(self._closing_pools), timeout=5)

    # Reads.

    @staticmethod
    def _run(row: asyncpg.Record | None) -> _core.RunRecord | None:
        return None if row is None else _core.RunRecord.from_row(tuple(row))

    async def run(self, run_key: int) -> _core.RunRecord | None:
        group = self._in_group()
        if group is not None:  # batched with the group's other reads
            record: _core.RunRecord | None = await group.run(run_key)
            return record
        return self._run(await self._fetchrow("read a run", "RUN_BY_KEY", run_key))

    async def current_run(self, workflow_id: str) -> _core.RunRecord | None:
        return self._run(await self._fetchrow("read a run", "CURRENT_RUN", workflow_id))

    async def run_by_id(self, run_id: str) -> _core.RunRecord | None:
        # Batched: the ids asked for in one pass are read together (many `result()` waits).
        record: _core.RunRecord | None = await self._runs_by_id.get(run_id)
        return record

    async def _read_runs_by_id(self, run_ids: list[str]) -> dict[str, _core.RunRecord]:
        rows = await self._fetch("read runs", "RUNS_BY_ID", run_ids)
        found = {}
        for row in rows:
            values = tuple(row)
            found[values[3]] = _core.RunRecord.from_row(values[:19])
            if values[19] is not None:
                # A closed run's last event came along: its `result()` reads it next.
                closing = self._closing_rows
                closing[(values[0], values[7])] = values[19]
                while len(closing) > _CLOSING_ROWS_KEPT:
                    del closing[next(iter(closing))]
        return found

    async def _read_events(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        rows = await self._fetch(
            "read events", "EVENTS_BY_ID", [key[0] for key in keys], [key[1] for key in keys]
        )
        return {(row[0], row[1]): row[2] for row in rows}

    async def list_runs(
        self,
        after_run_key: int | None,
        limit: int,
        status: str | None,
        workflow_type: str | None,
    ) -> list[_core.RunRecord]:
        after = -1 if after_run_key is None else after_run_key
        if status is not None:
            rows = await self._fetch(
                "list runs", "LIST_RUNS_BY_STATUS", after, limit, status, workflow_type
            )
        elif workflow_type is not None:
            rows = await self._fetch("list runs", "LIST_RUNS_BY_TYPE", after, limit, workflow_type)
        else:
            rows = await self._fetch("list runs", "LIST_ALL_RUNS", after, limit)
        return [_core.RunRecord.from_row(tuple(row)) for row in rows]

    async def activity(self, run_key: int, scheduled_event_id: int) -> _core.ActivityRecord | None:
        group = self._in_group()
        if group is not None:  # batched with the group's other reads
            record: _core.ActivityRecord | None = await group.activity(run_key, scheduled_event_id)
            return record
        row = await self._fetchrow("read an activity", "ACTIVITY", run_key, scheduled_event_id)
        return None if row is None else _core.ActivityRecord.from_row(tuple(row))

    async def timer(self, run_key: int, started_event_id: int) -> int | None:
        row = await self._fetchrow("read a timer", "TIMER", run_key, started_event_id)
        return None if row is None else int(row[0])

    async def event_rows(self, run_key: int, from_event_id: int, to_event_id: int) -> list[bytes]:
        if from_event_id == to_event_id:
            # One event (a closed run's last, for its `result()`): read with the run already,
            # or batched with the others.
            kept = self._closing_rows.pop((run_key, to_event_id), None)
            if kept is not None:
                return [kept]
            row: bytes | None = await self._events_by_id.get((run_key, to_event_id))
            return [] if row is None else [row]
        rows = await self._fetch(
            "read events", "EVENT_ROWS", run_key, max(from_event_id, 1), to_event_id
        )
        return [row[0] for row in rows]

    async def ready_workflow_tasks(
        self, task_queue: str, now_ms: int, limit: int
    ) -> list[_core.RunRecord]:
        raise NotImplementedError("PostgresStorage claims tasks with claim_workflow_tasks")

    async def ready_activity_tasks(
        self, task_queue: str, now_ms: int, limit: int
    ) -> list[tuple[_core.RunRecord, _core.ActivityRecord]]:
        raise NotImplementedError("PostgresStorage claims attempts with claim_activity_tasks")

    async def due(self, now_ms: int, limit: int) -> list[Any]:
        from .._store_tables import Due

        rows = await self._fetch("read due deadlines", "DUE", now_ms, limit)
        return [Due(row[0], _KIND[row[1]], row[2], row[3]) for row in rows]

    async def next_wakeup_ms(self, now_ms: int, task_queue: str | None = None) -> int | None:
        row = await self._fetchrow("read the next deadline", "NEXT_WAKEUP", now_ms, task_queue)
        return None if row is None or row[0] is None else int(row[0])

    async def busy_and_wakeup(self, now_ms: int) -> tuple[int, int | None]:
        row = await self._fetchrow("count busy work", "BUSY_AND_WAKEUP", now_ms, None)
        assert row is not None
        return int(row[0]), None if row[1] is None else int(row[1])

    # Claims: the oldest ready rows no other worker's claim holds, locked while the caller's
    # rules decide their leases, written in the same transaction.

    async def claim_workflow_tasks(
        self, task_queue: str, now_ms: int, limit: int, decide: Decide, identity: str
    ) -> list[tuple[Any, _core.Decision]]:
        statement = "CLAIM_WORKFLOW_TASKS"
        return await self._claim(statement, task_queue, now_ms, limit, decide, identity)

    async def claim_activity_tasks(
        self, task_queue: str, now_ms: int, limit: int, decide: Decide, identity: str
    ) -> list[tuple[Any, _core.Decision]]:
        statement = "CLAIM_ACTIVITY_TASKS"
        return await self._claim(statement, task_queue, now_ms, limit, decide, identity)

    async def _claim(
        self,
        statement: str,
        task_queue: str,
        now_ms: int,
        limit: int,
        decide: Decide,
        identity: str,
    ) -> list[tuple[Any, _core.Decision]]:
        if limit <= 0:
            return []
        async with self._connection("claim tasks") as connection:
            process = server_process(connection)
            transaction = connection.transaction()
            await transaction.start()
            try:
                rows = await connection.fetch(
                    self._statements[statement], task_queue, now_ms, limit
                )
                candidates = [self._candidate(row) for row in rows]
                leased: list[tuple[Any, _core.Decision]] = []
                for candidate, decision in zip(candidates, await decide(candidates), strict=True):
                    if isinstance(decision, BaseException) or decision.is_empty:
                        continue  # no longer leasable
                    leased.append((candidate, decision))
                if leased:
                    # Every lease in one statement (the group write's), in this transaction.
                    writes = [
                        Write(candidate_key(c), [decision], identity) for c, decision in leased
                    ]
                    written = await write_members(
                        connection, self._statements, self._group_statement, writes,
                        self.channel, [],
                    )  # fmt: skip
                    leased = [lease for member, lease in enumerate(leased) if member in written]
            except BaseException:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            try:
                await self._commit(transaction, connection, "claim tasks", process)
            except CommitUnknownError as error:
                unknown = error  # resolved below, on a connection that works
            else:
                return leased
        # Best effort: a lease that lands after all, unseen, lapses and is dispatched again.
        await self.settle_lost_write(unknown)
        return await self._claimed_after_all(leased)

    async def _claimed_after_all(
        self, leased: list[tuple[Any, _core.Decision]]
    ) -> list[tuple[Any, _core.Decision]]:
        """The leases of a claim whose commit may or may not have happened that did: each
        lease set a version no other write sets, so a record carries it exactly when the claim
        committed. Those that did not commit stay queued for the next poll."""
        kept = []
        for candidate, decision in leased:
            if isinstance(candidate, tuple):
                run, _ = candidate
                _, scheduled_event_id, _, record = decision.activities[0]
                activity = await self.activity(run.key, scheduled_event_id)
                found = None if activity is None else activity.version
                expected = None if record is None else record.version
            else:
                stored = await self.run(candidate.key)
                found = None if stored is None else stored.version
                expected = None if decision.run is None else decision.run.version
            if found is not None and found == expected:
                kept.append((candidate, decision))
        return kept

    @staticmethod
    def _candidate(row: asyncpg.Record) -> Any:
        values = tuple(row)
        run = _core.RunRecord.from_row(values[:19])
        if len(values) == 19:
            return run
        return run, _core.ActivityRecord.from_row(values[19:])

    # The fenced write.

    async def lease_identity(self, run_key: int) -> str | None:
        row = await self._fetchrow("read a run's lease holder", "LEASE_IDENTITY", run_key)
        return None if row is None else row[0]

    async def persist(self, run_key: int | None, decision: _core.Decision, identity: str) -> int:
        return (await self.persist_all([(run_key, decision)], identity))[0]

    async def persist_all(
        self, writes: list[tuple[int | None, _core.Decision]], identity: str
    ) -> list[int]:
        member = self._member.get()
        if member is not None:  # written with the group's other members, committed once
            member.persisted = True
            run_key = writes[0][0]
            decisions = [decision for _, decision in writes]
            key = await member.group.persist(run_key, decisions, identity)
            return [key] * len(writes)
        # Outside a group (a tick's deadline): the same statement, for one member, its own
        # commit.
        decisions = [decision for _, decision in writes]
        write = Write(writes[0][0], decisions, identity)
        channel, payloads = self._notice(decisions)
        try:
            async with self._connection("persist a decision") as connection:
                process = server_process(connection)
                try:
                    accepted = await write_members(
                        connection, self._statements, self._group_statement, [write],
                        channel, payloads,
                    )  # fmt: skip
                except CONNECTION_LOST as error:
                    lost(connection)
                    raise commit_unknown("a decision", error, process) from error
        except StorageError as error:
            raise as_storage_error(error) from error.__cause__
        if 0 not in accepted:
            raise refusal(write)
        return [accepted[0]] * len(writes)

    async def _commit(
        self, transaction: Any, connection: Any, what: str, process: int | None
    ) -> None:
        try:
            await transaction.commit()
        except CONNECTION_LOST as error:
            lost(connection)
            raise commit_unknown(what, error, process) from error

    async def settle_lost_write(self, unknown: CommitUnknownError) -> bool:
        """Ends the server process of the connection that was lost mid-commit, whatever it
        is doing, and waits until it has gone: a partition that sent no reset leaves it
        running, perhaps waiting on a lock (or idle, with the statement still on its way),
        to commit after a read-back said it had not. True once it has gone; False when that
        cannot be made sure (its pid or start unknown, as behind pgbouncer; no right to end
        it): the write then stays unknown."""
        pid = unknown.server_process
        started = None if pid is None else self._backend_starts.get(pid)
        if pid is None or started is None:
            return False
        try:
            async with self._connection("end a lost connection's server process") as connection:
                for _ in range(SETTLE_TRIES):
                    if not await connection.fetchval(
                        self._statements["BACKEND_ALIVE"], pid, started
                    ):
                        self._backend_starts.pop(pid, None)
                        return True
                    await connection.fetchval(self._statements["END_BACKEND"], pid)
                    await asyncio.sleep(SETTLE_PAUSE_SECONDS)
        except StorageError:
            return False
        return False

    # Queries, answered by a worker in any process.

    async def submit_query(self, now_ms: int, run: _core.RunRecord, name: str, input: bytes) -> int:
        async with self._connection("submit a query") as connection, connection.transaction():
            query_id: int = await connection.fetchval(
                self._statements["SUBMIT_QUERY"],
                run.task_queue,
                run.workflow_id,
                run.run_id,
                name,
                input,
                now_ms,
            )
            await connection.execute(self._statements["NOTIFY"], self.channel, self._origin)
        return query_id

    async def take_query(self, task_queue: str) -> QueryTask | None:
        row = await self._fetchrow("take a query", "TAKE_QUERY", task_queue)
        return None if row is None else QueryTask(row[0], row[1], row[2], row[3], row[4])

    async def answer_query(self, query_id: int, result: bytes | None, error: str | None) -> None:
        async with self._connection("answer a query") as connection, connection.transaction():
            await connection.execute(self._statements["ANSWER_QUERY"], query_id, result, error)
            await connection.execute(self._statements["NOTIFY"], self.channel, self._origin)

    async def read_answer(
        self, query_id: int, give_up: bool
    ) -> tuple[bytes | None, str | None] | None:
        async with self._connection("read a query's answer") as connection:
            row = await connection.fetchrow(self._statements["READ_ANSWER"], query_id)
            if row is None:
                return None
            answered = row[0] == 2
            if answered or give_up:
                await connection.execute(self._statements["DELETE_QUERY"], query_id)
            return (row[1], row[2]) if answered else None


#: How long a pooled statement, or waiting for a pooled connection, may take before it fails
#: as if the connection had dropped (a write then is of unknown outcome, and read back).
STATEMENT_TIMEOUT_SECONDS = 30.0
#: Looks at a lost connection's server process (ended at the first) before a read-back.
SETTLE_TRIES = 50
SETTLE_PAUSE_SECONDS = 0.02

#: Closed runs' last events kept from a read of their runs until their `result()` takes them
#: (bounded: a run read for another reason leaves its row behind).
_CLOSING_ROWS_KEPT = 1024

#: Run ids one notification carries (each at most 36 characters and a space).
_CLOSED_PER_NOTICE = 200


class _Member:
    """An operation's membership of its group."""

    __slots__ = ("group", "persisted")

    def __init__(self, group: Group) -> None:
        self.group = group
        self.persisted = False


async def _no_reset(connection: asyncpg.Connection) -> None:
    return None


@contextlib.asynccontextmanager
async def _acquired(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the pool, given back quietly: giving back resets the session, which
    fails on a connection the server has just cut, and that failure, coming after a commit,
    must not turn the commit into an error (the pool drops the connection either way)."""
    connection = await pool.acquire(timeout=STATEMENT_TIMEOUT_SECONDS)
    try:
        yield connection
    finally:
        with contextlib.suppress(Exception):
            await pool.release(connection)


async def _close_quietly(pool: asyncpg.Pool) -> None:
    """Closes a pool no call uses any more; one that will not close in time is terminated."""
    try:
        await asyncio.wait_for(pool.close(), 5)
    except Exception:
        pool.terminate()


def candidate_key(candidate: Any) -> int:
    """The run key of a claim's candidate (a run, or a run and one of its activities)."""
    run = candidate[0] if isinstance(candidate, tuple) else candidate
    key: int = run.key
    return key
