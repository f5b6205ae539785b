"""`cli_app` with `greet` changed in a way that breaks replay of old histories."""

from __future__ import annotations

from datetime import timedelta

from mainspring import WorkflowContext, workflow


@workflow
async def greet(ctx: WorkflowContext, name: str) -> str:
    await ctx.sleep(timedelta(seconds=1))  # new: a timer before the activity
    return name
