"""The cyclic garbage collector's pace while workers run.

CPython collects its youngest generation every 700 new container objects. A worker allocates
about 80 per workflow it advances (futures, tasks, tuples of commands and jobs), so the collector
ran every nine workflows or so and its older generations walked every cached instance: 10-17%
of a worker's time in the end-to-end benchmarks. While any worker runs, the first threshold is
raised (``WorkerConfig.gc_threshold``); the last worker to stop puts the old thresholds back.
"""

from __future__ import annotations

import gc

_saved: tuple[int, int, int] | None = None
_holders = 0


def hold(first_threshold: int) -> None:
    """Raises the first-generation threshold to at least ``first_threshold`` for one worker."""
    global _saved, _holders
    current = gc.get_threshold()
    if _holders == 0:
        _saved = current
    _holders += 1
    if current[0] < first_threshold:
        gc.set_threshold(first_threshold, *current[1:])


def release() -> None:
    """One worker stopped; the last one restores the thresholds it found."""
    global _saved, _holders
    _holders -= 1
    if _holders == 0 and _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None
