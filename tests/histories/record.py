"""Records the golden histories in this folder: ``python -m tests.histories.record``.

Run it only when a history format or command-sequence change is intended; the golden tests
(Python and Rust) fail on any drift, which is their point.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from mainspring import Client, Worker
from mainspring.storage import MemoryStorage, VirtualClock
from mainspring.testing import time_skipping

from ..workflows import (
    ALL_ACTIVITIES,
    ALL_WORKFLOWS,
    AddItem,
    Approve,
    Order,
    cancellable,
    cart,
    checkout,
    failing,
    parallel,
    retrying,
    sequential,
)

FOLDER = Path(__file__).parent


async def record() -> None:
    storage = MemoryStorage(clock=VirtualClock())
    client = Client(storage)
    queue = "golden"
    cases: list[tuple[str, Any, Any]] = [
        ("sequential", sequential, 3),
        ("parallel", parallel, 3),
        ("retrying", retrying, 2),
        ("failing", failing, "declined"),
    ]
    async with Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS, activities=ALL_ACTIVITIES):
        async with time_skipping(storage):
            for name, function, argument in cases:
                handle = await client.start_workflow(function, argument, id=name, task_queue=queue)
                with contextlib.suppress(Exception):  # failing ones are recorded too
                    await handle.result()
        handle = await client.start_workflow(
            checkout, Order("o-1", 995), id="checkout", task_queue=queue
        )
        await handle.signal(Approve(approver="ann"))
        async with time_skipping(storage):
            await handle.result()
        handle = await client.start_workflow(cart, id="cart", task_queue=queue)
        for item in ("apple", "checkout"):
            await handle.signal(AddItem(item=item))
        await handle.result()
        handle = await client.start_workflow(cancellable, id="cancellable", task_queue=queue)
        while True:
            changed = storage.wait_for_change()
            if (await handle.describe()).history_length >= 3:
                break
            await changed
        await handle.cancel("golden")
        with contextlib.suppress(Exception):
            await handle.result()
    async for description in client.list_workflows():
        history = await client.get_workflow_handle(description.workflow_id).history()
        (FOLDER / f"{description.workflow_id}.json").write_text(history.to_json() + "\n")


if __name__ == "__main__":
    asyncio.run(record())
