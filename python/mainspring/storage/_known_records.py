"""Records as this process last stored them, so that the next step of a run it just wrote
need not read the run back first.

A worker's step on a run (an activity's result with the workflow task it wakes, a leased
workflow task's commit) is decided on the run and activity records, then written fenced by
their versions. The commit before it, written here, already says what those records are now
(`Decision.run`, `Decision.activities`). Deciding on them instead of reading them saves one
round trip a step. It is as safe as a read: a record someone else changed since (another
process, a signal from another storage object) has another version now, so the write is
refused and the operation is decided again on records read afresh, as after any conflict.

Bounded by count and by the payload bytes the activity records hold (inputs, heartbeat
details): the runs written longest ago are forgotten first; a closed run at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from .. import _core

#: Runs remembered at most (each its run record and its open activities' records).
KNOWN_RUNS = 10_000
#: Payload bytes the remembered activity records may hold together.
KNOWN_PAYLOAD_BYTES = 64 * 1024 * 1024


class _Known:
    __slots__ = ("activities", "payload_bytes", "run")

    def __init__(self) -> None:
        self.run: _core.RunRecord | None = None
        self.activities: dict[int, _core.ActivityRecord] = {}
        self.payload_bytes = 0


class KnownRecords:
    def __init__(self, limit: int = KNOWN_RUNS, payload_limit: int = KNOWN_PAYLOAD_BYTES) -> None:
        self._limit = limit
        self._payload_limit = payload_limit
        self._runs: OrderedDict[int, _Known] = OrderedDict()
        self.payload_bytes = 0

    def __len__(self) -> int:
        return len(self._runs)

    def run(self, run_key: int) -> _core.RunRecord | None:
        known = self._runs.get(run_key)
        return None if known is None else known.run

    def held(
        self, run_key: int, scheduled_event_id: int
    ) -> tuple[_core.RunRecord, _core.ActivityRecord] | None:
        """A run and one of its activities, if both are known."""
        known = self._runs.get(run_key)
        if known is None or known.run is None:
            return None
        activity = known.activities.get(scheduled_event_id)
        return None if activity is None else (known.run, activity)

    def remember(self, run_key: int, decisions: Sequence[_core.Decision]) -> None:
        """What decisions about run ``run_key`` left stored, once their write committed."""
        known = self._runs.get(run_key)
        if known is None:
            known = self._runs[run_key] = _Known()
        else:
            self._runs.move_to_end(run_key)
        for decision in decisions:
            run = decision.run
            if run is not None:
                if not run.is_running:
                    # Nothing more is decided on a closed run here; describe and result()
                    # read what is stored.
                    self.forget(run_key)
                    return
                if run.key != run_key:  # a new run: the store gave it its key
                    run = _core.RunRecord.from_row((run_key, *run.row()[1:]))
                known.run = run
            before = known.payload_bytes
            if decision.drop_pending_work:
                known.activities.clear()
                known.payload_bytes = 0
            for write, scheduled_event_id, _, record in decision.activities:
                previous = known.activities.pop(scheduled_event_id, None)
                if previous is not None:
                    known.payload_bytes -= previous.payload_bytes
                if write != "delete" and record is not None:
                    known.activities[scheduled_event_id] = record
                    known.payload_bytes += record.payload_bytes
            self.payload_bytes += known.payload_bytes - before
        while self._runs and (
            len(self._runs) > self._limit or self.payload_bytes > self._payload_limit
        ):
            _, oldest = self._runs.popitem(last=False)
            self.payload_bytes -= oldest.payload_bytes

    def forget(self, run_key: int | None) -> bool:
        """Forgets a run (its records may have changed elsewhere); returns whether any of it
        was known."""
        known = None if run_key is None else self._runs.pop(run_key, None)
        if known is None:
            return False
        self.payload_bytes -= known.payload_bytes
        return True
