"""Golden histories (recorded by ``python -m tests.histories.record``) must keep replaying
through today's workflow code and keep their exact JSON form. rust/core/tests/golden.rs replays
the same files through the core alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from mainspring import History, Replayer

from .workflows import ALL_WORKFLOWS

GOLDEN = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_golden_histories() -> None:
    assert len(GOLDEN) >= 7


@pytest.mark.parametrize("path", GOLDEN, ids=lambda path: path.stem)
def test_golden_history_replays_and_round_trips(path: Path) -> None:
    text = path.read_text()
    history = History.from_json(text)
    Replayer(workflows=ALL_WORKFLOWS).replay(history)
    assert history.to_json() + "\n" == text
