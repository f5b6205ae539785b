"""What a store written in Python does when a commit's outcome is unknown (the connection
dropped after the commit was sent): it reads back whether the write landed. Every write sets
versions no other write sets, and the versions it replaced were read just before, so:

- the record carries the version the write set: it landed;
- it still carries the version the write replaced: it did not;
- anything else (another writer moved it on since): it cannot be told, and the caller gets
  the `CommitUnknownError` (re-read before retrying anything that is not fenced: a signal).

First the store ends what the lost connection's session may still be doing
(`StoreTables.settle_lost_write`): a partition that sent no reset leaves the server's process
running, perhaps waiting on a lock, and committing after a read-back said it had not.

A new run landed exactly when a run with its (fresh) run id exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _core
from ..errors import CommitUnknownError, StorageError

if TYPE_CHECKING:
    from ._store_tables import StoreTables


async def landed(
    tables: StoreTables,
    run_key: int | None,
    decisions: list[_core.Decision],
    unknown: CommitUnknownError,
) -> int:
    """The run's key if the write of ``decisions`` committed after all; StorageError (not
    committed) if it did not; ``unknown`` if it cannot be told or read."""
    outcome: bool | None
    if not await tables.settle_lost_write(unknown):
        raise unknown  # the lost session may still commit: nothing read now can tell
    try:
        if any(decision.run is not None for decision in decisions):
            wrote, replaced, run_id = _run_versions(decisions)
            stored = await tables.run_by_id(run_id)
            if decisions[0].inserts_run:
                outcome = stored is not None
            else:
                outcome = _compare(None if stored is None else stored.version, wrote, replaced)
            key = 0 if stored is None else stored.key
        elif run_key is not None and decisions[0].activities:
            _, scheduled_event_id, replaced, record = decisions[0].activities[0]
            current = await tables.activity(run_key, scheduled_event_id)
            found = None if current is None else current.version
            if record is None:  # a removal: gone is landed
                outcome = True if found is None else _compare(found, None, replaced)
            else:
                outcome = _compare(found, record.version, replaced)
            key = run_key
        else:
            outcome = None
    except StorageError:
        raise unknown from None
    if outcome is None:
        raise unknown
    if not outcome:
        raise StorageError(f"not committed (read back after the connection dropped): {unknown}")
    return key


def _run_versions(decisions: list[_core.Decision]) -> tuple[int, int | None, str]:
    """The run's version as the write left it, the version it replaced, and its id."""
    runs = [decision for decision in decisions if decision.run is not None]
    last = runs[-1].run
    assert last is not None
    return last.version, runs[0].expected_version, last.run_id


def _compare(found: int | None, wrote: int | None, replaced: int | None) -> bool | None:
    if found is not None and found == wrote:
        return True
    if found is not None and found == replaced:
        return False
    return None
