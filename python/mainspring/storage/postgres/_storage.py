"""`PostgresStorage`: the storage contract on PostgreSQL, for many worker processes on many
machines. The Python adapter over the core's rules (`storage/_adapter.py`) decides; the
tables (`_tables.py`) load, persist fenced, and hand work out with ``FOR UPDATE SKIP LOCKED``;
the listener (`_listener.py`) turns other processes' commits into wake-ups."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

from ... import _core
from .._adapter import AdaptedStorage, attempts_leased
from ..base import ActivitySlots, ActivityTask, SlotHold, WorkflowTask
from ..memory import SystemClock, VirtualClock
from . import _schema
from ._errors import translated
from ._tables import PostgresTables


class PostgresStorage(AdaptedStorage):
    """The storage on PostgreSQL (asyncpg), in the database schema ``schema``.

    Connects, and creates or migrates the schema (under an advisory lock, so workers starting
    together are safe), on first use or on :meth:`connect`. With ``migrate=False`` it never
    changes the schema and refuses one that is not this build's (run ``mainspring db migrate``
    as a role that may). Its connections are pooled: ``pool_size`` of them, or by default as
    many as the workers that use it need (``DEFAULT_POOL_SIZE``, 8, for one worker at its
    defaults; more for more pollers: see :meth:`worker_started`). One more, of its own,
    LISTENs for other processes' commits.

    ``identity`` names this process's workers in ``describe`` (default ``pid@hostname``).

    Behind pgbouncer in transaction mode pass ``pgbouncer=True``: no LISTEN (notifications do
    not pass a transaction pooler; pollers look every ``poll_interval`` instead) and no
    prepared-statement cache.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "mainspring",
        pool_size: int | None = None,
        migrate: bool = True,
        pgbouncer: bool = False,
        clock: VirtualClock | SystemClock | None = None,
        poll_interval: timedelta | None = None,
        workflow_task_retry_initial: timedelta = timedelta(seconds=1),
        workflow_task_retry_maximum: timedelta = timedelta(seconds=60),
        identity: str | None = None,
    ) -> None:
        _schema.quoted_schema(schema)  # a bad name fails here, not at first use
        if poll_interval is None:
            # Notifications wake pollers at once; the poll only backs a lost one up.
            poll_interval = timedelta(milliseconds=100 if pgbouncer else 1000)
        tables = PostgresTables(
            dsn,
            schema,
            pool_size=pool_size,
            statement_cache_size=0 if pgbouncer else 100,
            migrate=migrate,
            listen=not pgbouncer,
            notify_origin=secrets.token_hex(8),
        )
        super().__init__(
            tables,
            clock=clock,
            poll_interval=poll_interval,
            workflow_task_retry_initial=workflow_task_retry_initial,
            workflow_task_retry_maximum=workflow_task_retry_maximum,
            identity=identity,
        )
        self.tables: PostgresTables = tables
        tables.on_notice = self.notice_from_elsewhere
        tables.on_closed = self.run_closed
        tables.on_gap = self.wake_every_waiter
        self.schema = schema

    def worker_started(self, pollers: int) -> None:
        """A worker with ``pollers`` pollers starts on this storage (``Worker.run`` says so):
        the pool grows to fit the workers running, unless ``pool_size`` was given."""
        self.tables.workers_changed(pollers)

    def worker_stopped(self, pollers: int) -> None:
        """That worker stopped (the pool keeps its size: it only grows)."""
        self.tables.workers_changed(-pollers)

    @property
    def pool_size(self) -> int:
        """Connections the pool holds at most."""
        return self.tables.pool_size

    async def connect(self) -> PostgresStorage:
        """Connects (and migrates, unless ``migrate=False``) now rather than on first use, so
        a wrong DSN or an unmigrated schema fails here. Returns the storage."""
        await self.tables.run(0)
        return self

    async def migrate(self) -> int:
        """Creates or migrates the schema now, whatever ``migrate`` says (what ``mainspring db
        migrate`` runs); returns the version it found (0: none)."""
        connection = await self.tables.connect()
        try:
            async with translated("migrate the schema"):
                return await _schema.migrate(connection, self.schema)
        finally:
            await connection.close()

    async def poll_workflow_tasks(
        self, task_queue: str, lease_ms: int, max_tasks: int
    ) -> list[WorkflowTask]:
        await self._tick()

        async def decide(runs: list[Any]) -> list[_core.Decision | BaseException]:
            return await asyncio.gather(
                *(self._decide(_core.RuleRequest.lease_workflow_task(run, lease_ms))
                  for run in runs),
                return_exceptions=True,
            )  # fmt: skip

        claimed = await self.tables.claim_workflow_tasks(
            task_queue, self.now_ms(), max_tasks, decide, self.identity
        )
        for run, decision in claimed:
            self.remember(run.key, [decision])
        # Together: their events are read in one statement (the reads of a pass are batched).
        leased = await asyncio.gather(*(self._task_leased_by(decision) for _, decision in claimed))
        return [task for task in leased if task is not None]

    async def poll_activity_tasks(
        self, task_queue: str, max_tasks: int, *, slots: ActivitySlots | None = None
    ) -> list[ActivityTask]:
        # Slots are taken while the poll's reads, decisions and writes go on.
        with SlotHold(slots, max_tasks) as hold:
            await self._tick()

            async def decide(pairs: list[Any]) -> list[_core.Decision | BaseException]:
                return await asyncio.gather(
                    *(self._decide(_core.RuleRequest.lease_activity_task(run, activity))
                      for run, activity in pairs),
                    return_exceptions=True,
                )  # fmt: skip

            claimed = await self.tables.claim_activity_tasks(
                task_queue, self.now_ms(), hold.granted, decide, self.identity
            )
            tasks: list[ActivityTask] = []
            for (run, _), decision in claimed:
                self.remember(run.key, [decision])
                tasks += attempts_leased(run, decision, task_queue)
            hold.keep(len(tasks))
            return tasks

    async def close(self) -> None:
        await super().close()
        await self.tables.close()
