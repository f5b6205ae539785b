"""A tiny app for the CLI tests: `mainspring worker tests.cli_app --task-queue cli`."""

from __future__ import annotations

from datetime import timedelta

from mainspring import Query, Signal, WorkflowContext, activity, workflow


class Proceed(Signal):
    note: str


class Stage(Query[str]):
    pass


@activity
async def shout(name: str) -> str:
    return name.upper()


@workflow
async def greet(ctx: WorkflowContext, name: str) -> str:
    loud: str = await ctx.execute_activity(
        shout, name, start_to_close_timeout=timedelta(seconds=10)
    )
    return f"hello {loud}"


@workflow
async def gated(ctx: WorkflowContext) -> str:
    stage = "waiting"
    ctx.set_query_handler(Stage, lambda query: stage)
    signal = await ctx.wait_signal(Proceed)
    stage = "done"
    return signal.note
