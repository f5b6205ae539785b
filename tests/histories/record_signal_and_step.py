"""Records, with the release before engine flags (e2faad3), a history whose second task got a
signal and an activity result in one activation, while a coroutine waited for that signal:
``python tests/histories/record_signal_and_step.py tests/histories/format-1/signal-and-step.json``
run with that release. Self-contained (public API only, its own signal class), so that it runs
there; `test_activations_and_queries.py` replays the history through this same workflow."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from mainspring import Client, Signal, Worker, WorkflowContext, activity, workflow
from mainspring.storage import MemoryStorage, VirtualClock

SHORT = timedelta(seconds=30)


class AddItem(Signal):
    item: str


@activity(name="echo")
async def echo(value: str) -> str:
    return value


@activity(name="shout")
async def shout(value: str) -> str:
    return value.upper()


@workflow(name="signal_and_step")
async def signal_and_step(ctx: WorkflowContext) -> list[str]:
    order: list[str] = []

    async def on_signal() -> None:
        signal = await ctx.wait_signal(AddItem)
        order.append(signal.item)
        order.append(await ctx.execute_activity(shout, "a", start_to_close_timeout=SHORT))

    waiter = asyncio.ensure_future(on_signal())
    order.append(await ctx.execute_activity(echo, "step1", start_to_close_timeout=SHORT))
    order.append(await ctx.execute_activity(echo, "step2", start_to_close_timeout=SHORT))
    await waiter
    return order


async def main(out: str) -> None:
    storage = MemoryStorage(clock=VirtualClock())
    client = Client(storage)
    async with Worker(client, task_queue="q", workflows=[signal_and_step]):
        handle = await client.start_workflow(signal_and_step, id="s", task_queue="q")
        while (await handle.describe()).history_length < 3:
            await asyncio.sleep(0.01)
    await handle.signal(AddItem(item="x"))
    async with Worker(client, task_queue="q", activities=[echo, shout]):
        while (await handle.describe()).history_length < 5:
            await asyncio.sleep(0.01)
    async with Worker(
        client, task_queue="q", workflows=[signal_and_step], activities=[echo, shout]
    ):
        print(await handle.result(timeout=30))
    history = await handle.history()
    print([kind for _, _, kind in history.outline()])
    with open(out, "w") as file:
        file.write(history.to_json() + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
