"""The scheduler hand-over test's app: a cron schedule firing every second."""

from __future__ import annotations

import durably

app = durably.App("leader")


@app.function(id="every-second", trigger=durably.on_cron("*/1 * * * * *"))
async def every_second(ctx: durably.Context) -> str:
    return ctx.event.data["tick"]
