"""A group's writes as one statement (`_groups.py`): every member's rows passed as arrays,
spread by ``unnest``, written by data-modifying ``WITH`` clauses, committed as the statement
ends. One round trip and one WAL flush for the whole group (a group with a new run its
first task closes: the statement and the close in one transaction, four round trips).

Each array row carries its member's ordinal. The fence decides which members are
``accepted``: a new run is inserted open (``ON CONFLICT DO NOTHING`` on the unique index over
open runs: an id that has an open run refuses it; a run its first task closes is closed by a
second statement in the same transaction), a run is updated with compare-and-set on the version the
member's first decision expected, and a member that changes no run (a heartbeat) is accepted
as it is. Only accepted members' events, activities and timers are written. If an activity's
or timer's own compare-and-set fails for an accepted member, `conflict()` (a function of the
schema) aborts the whole statement, so nothing of the group is written: every member gets
StorageConflictError and is decided again.

What a member writes is the net change its decisions make to each record (an activity
scheduled and cancelled by one member is never written), fenced by what its first decision
expected. A member that closes its run drops the run's pending work, and so writes none of
its own changes to that work (no row is changed twice in one statement).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._statements import ACTIVITY_COLUMNS, RUN_COLUMNS

if TYPE_CHECKING:
    from ... import _core
    from ._groups import Write

_RUN_FIELDS = RUN_COLUMNS.removeprefix("run_key, ").split(", ")
_RUN_TYPES = (
    "bigint", "text", "text", "text", "text", "text", "bigint", "bigint", "bigint", "bigint",
    "bigint", "bigint", "text", "boolean", "bigint", "bigint", "bigint", "bigint",
)  # fmt: skip
_ACTIVITY_FIELDS = ACTIVITY_COLUMNS.split(", ")
_ACTIVITY_TYPES = (
    "bigint", "bigint", "text", "text", "text", "bytea", "bytea", "bigint", "bigint", "bigint",
    "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bytea",
    "bytea", "bigint",
)  # fmt: skip

_TASK_LEASED = 2  # the run row's task_state of a leased workflow task

# The lease's holder after a run's write: the writer's identity for a new lease (a token the
# run did not have), kept for the same lease, none when no worker holds the task. The right
# side of a SET sees the row as it was. (Bookkeeping for `describe`, not a rule.)
LEASE_HOLDER = (
    "CASE WHEN {state} <> 2 THEN NULL WHEN {old}task_token IS NOT DISTINCT FROM {token}"
    " THEN {old}lease_identity ELSE {identity} END"
)

#: The arrays the statement takes, in order: (name, column names, their types).
_INPUTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("new_open", ("m", *_RUN_FIELDS, "lease_identity"), ("bigint", *_RUN_TYPES, "text")),
    (
        "changed",
        ("m", "key", "expected", *_RUN_FIELDS, "lease_identity"),
        ("bigint", "bigint", "bigint", *_RUN_TYPES, "text"),
    ),
    ("plain", ("m", "key"), ("bigint", "bigint")),
    ("events", ("m", "event_id", "kind", "row"), ("bigint", "bigint", "text", "bytea")),
    ("activity_inserts", ("m", *_ACTIVITY_FIELDS), ("bigint", *_ACTIVITY_TYPES)),
    (
        "activity_updates",
        ("m", "expected", *_ACTIVITY_FIELDS),
        ("bigint", "bigint", *_ACTIVITY_TYPES),
    ),
    ("activity_deletes", ("m", "event_id", "expected"), ("bigint", "bigint", "bigint")),
    ("timer_inserts", ("m", "event_id", "fire_ms"), ("bigint", "bigint", "bigint")),
    ("timer_deletes", ("m", "event_id", "must_exist"), ("bigint", "bigint", "boolean")),
    ("drops", ("m",), ("bigint",)),
)


@functools.cache
def statement(present: frozenset[str]) -> str:
    """The statement (``{s}`` for the schema) for a group with rows of the ``present``
    inputs only (each shape is prepared once and kept), its parameters as
    :meth:`Packed.arguments` lays them out."""
    number = 0
    sources: dict[str, str] = {}
    parameter: dict[tuple[str, str], str] = {}  # (input, column) -> "$n::type[]"
    for name, columns, types in _INPUTS:
        if name not in present:
            continue
        arguments = []
        for column, kind in zip(columns, types, strict=True):
            number += 1
            parameter[name, column] = f"${number}::{kind}[]"
            arguments.append(parameter[name, column])
        sources[name] = f"unnest({', '.join(arguments)}) AS {name}({', '.join(columns)})"
    channel, payloads = f"${number + 1}::text", f"${number + 2}::text[]"
    fields = ", ".join(_RUN_FIELDS)

    def values(alias: str, names: list[str]) -> str:
        return ", ".join(f"{alias}.{name}" for name in names)

    holder = LEASE_HOLDER.format(
        state="changed.task_state",
        old="r.",
        token="changed.task_token",
        identity="changed.lease_identity",
    )
    clauses: list[str] = []
    accepted: list[str] = []
    if "new_open" in present:
        clauses.append(f"""inserted_open AS (
    INSERT INTO {{s}}.runs ({fields}, lease_identity)
    SELECT {values("new_open", [*_RUN_FIELDS, "lease_identity"])} FROM {sources["new_open"]}
    ON CONFLICT (workflow_id) WHERE status = 'RUNNING' DO NOTHING
    RETURNING run_id, run_key)""")
        ids = f"{parameter['new_open', 'm']}, {parameter['new_open', 'run_id']}"
        accepted.append(
            f"SELECT n.m, i.run_key FROM inserted_open AS i"
            f" JOIN unnest({ids}) AS n(m, run_id) USING (run_id)"
        )
    if "changed" in present:
        clauses.append(f"""updated AS (
    UPDATE {{s}}.runs AS r SET ({fields}) = ({values("changed", _RUN_FIELDS)}),
        lease_identity = {holder}
    FROM {sources["changed"]}
    WHERE r.run_key = changed.key AND r.version = changed.expected
    RETURNING changed.m, r.run_key)""")
        accepted.append("SELECT m, run_key FROM updated")
    if "plain" in present:
        accepted.append(f"SELECT plain.m, plain.key AS run_key FROM {sources['plain']}")
    clauses.append("accepted AS (\n    " + "\n    UNION ALL ".join(accepted) + ")")
    counts: list[str] = []  # rows written, for the statement's last column
    fences: list[str] = ["true"]  # what must hold, or the whole statement is refused
    if "events" in present:
        clauses.append(f"""written_events AS (
    INSERT INTO {{s}}.events (run_key, event_id, kind, row)
    SELECT a.run_key, events.event_id, events.kind, events.row
    FROM {sources["events"]} JOIN accepted AS a USING (m)
    RETURNING 1)""")
        counts.append("written_events")
    if "activity_inserts" in present:
        clauses.append(f"""inserted_activities AS (
    INSERT INTO {{s}}.activities (run_key, {", ".join(_ACTIVITY_FIELDS)})
    SELECT a.run_key, {values("activity_inserts", _ACTIVITY_FIELDS)}
    FROM {sources["activity_inserts"]} JOIN accepted AS a USING (m)
    RETURNING 1)""")
        counts.append("inserted_activities")
    if "activity_updates" in present:
        clauses.append(f"""activity_changes AS (
    SELECT a.run_key, activity_updates.* FROM {sources["activity_updates"]}
    JOIN accepted AS a USING (m)
), updated_activities AS (
    UPDATE {{s}}.activities AS t
    SET ({", ".join(_ACTIVITY_FIELDS[1:])}) = ({values("u", _ACTIVITY_FIELDS[1:])})
    FROM activity_changes AS u
    WHERE t.run_key = u.run_key AND t.scheduled_event_id = u.scheduled_event_id
        AND t.version = u.expected
    RETURNING 1)""")
        fences.append(
            "(SELECT count(*) FROM updated_activities) = (SELECT count(*) FROM activity_changes)"
        )
    if "activity_deletes" in present:
        clauses.append(f"""activity_removals AS (
    SELECT a.run_key, activity_deletes.* FROM {sources["activity_deletes"]}
    JOIN accepted AS a USING (m)
), deleted_activities AS (
    DELETE FROM {{s}}.activities AS t USING activity_removals AS d
    WHERE t.run_key = d.run_key AND t.scheduled_event_id = d.event_id
        AND t.version = d.expected
    RETURNING 1)""")
        fences.append(
            "(SELECT count(*) FROM deleted_activities) = (SELECT count(*) FROM activity_removals)"
        )
    if "timer_inserts" in present:
        clauses.append(f"""inserted_timers AS (
    INSERT INTO {{s}}.timers (run_key, started_event_id, fire_ms)
    SELECT a.run_key, timer_inserts.event_id, timer_inserts.fire_ms
    FROM {sources["timer_inserts"]} JOIN accepted AS a USING (m)
    RETURNING 1)""")
        counts.append("inserted_timers")
    if "timer_deletes" in present:
        clauses.append(f"""timer_removals AS (
    SELECT a.run_key, timer_deletes.* FROM {sources["timer_deletes"]}
    JOIN accepted AS a USING (m)
), deleted_timers AS (
    DELETE FROM {{s}}.timers AS t USING timer_removals AS d
    WHERE t.run_key = d.run_key AND t.started_event_id = d.event_id
    RETURNING d.must_exist)""")
        fences.append(
            "(SELECT count(*) FROM deleted_timers WHERE must_exist)"
            " = (SELECT count(*) FROM timer_removals WHERE must_exist)"
        )
    if "drops" in present:
        clauses.append(f"""dropping AS (
    SELECT a.run_key FROM {sources["drops"]} JOIN accepted AS a USING (m)
), dropped_activities AS (
    DELETE FROM {{s}}.activities WHERE run_key IN (SELECT run_key FROM dropping) RETURNING 1
), dropped_timers AS (
    DELETE FROM {{s}}.timers WHERE run_key IN (SELECT run_key FROM dropping) RETURNING 1)""")
        counts += ["dropped_activities", "dropped_timers"]
    written = " + ".join(f"(SELECT count(*) FROM {name})" for name in counts) or "0"
    return f"""WITH {", ".join(clauses)}
SELECT CASE WHEN NOT ({" AND ".join(fences)})
            THEN {{s}}.conflict('an activity or timer changed since it was read') END,
       (SELECT array_agg(m ORDER BY m) FROM accepted),
       (SELECT array_agg(run_key ORDER BY m) FROM accepted),
       {written},
       (SELECT count(*) FROM (SELECT pg_notify({channel}, payload)
                              FROM unnest({payloads}) AS payload) AS notified)
"""


@dataclass
class Packed:
    """The statement's arguments for a group's members, and what each member is."""

    arrays: dict[str, list[tuple[Any, ...]]] = field(
        default_factory=lambda: {name: [] for name, _, _ in _INPUTS}
    )
    #: New runs that close in their first task: inserted open, then closed by a second
    #: statement of the same transaction, by member: (member, status).
    closing: list[tuple[int, str]] = field(default_factory=list)

    @property
    def present(self) -> frozenset[str]:
        """The inputs this group has rows of (what shape of `statement` it needs)."""
        return frozenset(name for name, rows in self.arrays.items() if rows)

    def arguments(self, channel: str, payloads: list[str]) -> list[Any]:
        values: list[Any] = []
        for name, columns, _ in _INPUTS:
            rows = self.arrays[name]
            if rows:
                values += [[row[index] for row in rows] for index in range(len(columns))]
        return [*values, channel, payloads]


def pack(writes: list[Write]) -> Packed:
    packed = Packed()
    arrays = packed.arrays
    for member, write in enumerate(writes):
        decisions = write.decisions
        final_run = _final_run(decisions)
        if decisions[0].inserts_run:
            assert final_run is not None
            row = final_run.row()
            # Inserted open, whatever its first task did, so the unique index over open runs
            # fences it (a run its first task closes is closed by a second statement).
            holder = write.identity if row[8] == _TASK_LEASED else None
            arrays["new_open"].append((member, *row[1:6], "RUNNING", *row[7:], holder))
            if row[6] != "RUNNING":
                packed.closing.append((member, row[6]))
        elif final_run is not None:
            first = next(decision for decision in decisions if decision.run is not None)
            arrays["changed"].append(
                (
                    member,
                    write.run_key,
                    first.expected_version,
                    *final_run.row()[1:],
                    write.identity,
                )
            )
        else:
            arrays["plain"].append((member, write.run_key))
        _pack_children(arrays, member, decisions)
    # Rows of runs in key order: two processes' groups on the same runs lock them in the same
    # order (a deadlock would cost PostgreSQL's deadlock_timeout, then a retry).
    arrays["changed"].sort(key=lambda row: row[1])
    return packed


def _final_run(decisions: list[_core.Decision]) -> _core.RunRecord | None:
    for decision in reversed(decisions):
        if decision.run is not None:
            return decision.run
    return None


def _pack_children(
    arrays: dict[str, list[tuple[Any, ...]]], member: int, decisions: list[_core.Decision]
) -> None:
    drops = any(decision.drop_pending_work for decision in decisions)
    activities: dict[int, list[Any]] = {}
    timers: dict[int, list[Any]] = {}
    for decision in decisions:
        for event_id, kind, encoded in decision.events:
            arrays["events"].append((member, event_id, kind, encoded))
        for write, scheduled_event_id, expected, record in decision.activities:
            net = activities.get(scheduled_event_id)
            if net is None:
                activities[scheduled_event_id] = [write, expected, record]
            else:
                net[2] = record
        for write, started_event_id, fire_at in decision.timers:
            timer = timers.get(started_event_id)
            if timer is None:
                timers[started_event_id] = [write, fire_at, write == "fire"]
            else:
                if timer[0] == "insert":
                    timer[0] = "gone"  # set and removed by this member: never written
                timer[2] = timer[2] or write == "fire"
    if drops:
        # The run closes: its pending work goes, whatever this member did to it.
        arrays["drops"].append((member,))
        return
    for scheduled_event_id, (first, expected, record) in activities.items():
        if first == "insert":
            if record is not None:
                arrays["activity_inserts"].append((member, *record.row()))
        elif record is None:
            arrays["activity_deletes"].append((member, scheduled_event_id, expected))
        else:
            arrays["activity_updates"].append((member, expected, *record.row()))
    for started_event_id, (first, fire_at, fires) in timers.items():
        if first == "insert":
            arrays["timer_inserts"].append((member, started_event_id, fire_at))
        elif first != "gone":
            arrays["timer_deletes"].append((member, started_event_id, fires))
