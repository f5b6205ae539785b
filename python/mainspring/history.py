"""``History``: one run's recorded events, as exported by ``handle.history()``."""

from __future__ import annotations

from . import _core

__all__ = ["History"]


class History:
    """A validated, encoded history. Export with :meth:`to_json`; import with
    :meth:`from_json`. The JSON form is lossless (see docs/history-format.md).

    Raises:
        CorruptHistoryError: the bytes are not a history.
        InvalidHistoryError: the events break an invariant.
    """

    def __init__(self, encoded: bytes) -> None:
        self._length = _core.validate_history(encoded)
        self.encoded = encoded

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls(_core.history_bytes_from_json(text))

    def to_json(self) -> str:
        return _core.history_json_from_bytes(self.encoded)

    def outline(self) -> list[tuple[int, int, str]]:
        """``(event_id, timestamp_ms, event_type)`` of every event."""
        return _core.history_outline(self.encoded)

    def __len__(self) -> int:
        return self._length

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and other.encoded == self.encoded

    def __hash__(self) -> int:
        return hash(self.encoded)
