"""The batched reads of a group commit (`_groups.py`): every member's runs, or activities,
read by one statement, the keys passed as arrays. (The group's write is `_group_write.py`.)"""

from __future__ import annotations

from typing import Any


async def runs(connection: Any, statements: dict[str, str], keys: dict[int, Any]) -> list[Any]:
    rows = await connection.fetch(statements["READ_RUNS"], sorted(keys))
    return [tuple(row) for row in rows]


async def activities(
    connection: Any, statements: dict[str, str], keys: dict[tuple[int, int], Any]
) -> list[Any]:
    ordered = sorted(keys)
    rows = await connection.fetch(
        statements["READ_ACTIVITIES"], [key[0] for key in ordered], [key[1] for key in ordered]
    )
    return [tuple(row) for row in rows]
