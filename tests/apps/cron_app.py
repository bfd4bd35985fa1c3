"""The cron test's app: a seconds-level schedule (``DURABLY_TEST_CRON``, default every 2 s)
and an hourly one, each recording the tick it ran for."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import durably  # noqa: E402
from sidefx import record  # noqa: E402

app = durably.App("cron")


@app.function(id="every-2s", trigger=durably.on_cron(os.environ.get("DURABLY_TEST_CRON", "*/2 * * * * *")))
async def every_2s(ctx: durably.Context) -> str:
    tick = ctx.event.data["tick"]
    await ctx.step.run("record", record, ctx.run_id, "tick:" + tick)
    return tick


@app.function(id="hourly", trigger=durably.on_cron("0 * * * *", tz="Europe/Berlin"))
async def hourly(ctx: durably.Context) -> str:
    tick = ctx.event.data["tick"]
    await ctx.step.run("record", record, ctx.run_id, "hourly:" + tick)
    return tick
