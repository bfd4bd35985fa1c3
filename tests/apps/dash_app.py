"""An app for the dashboard tests."""

import durably

app = durably.App("dash")


@app.function(id="greet", trigger=durably.on_event("greet"), retries=0)
async def greet(ctx):
    name = ctx.event.data.get("name", "world")
    out = await ctx.step.run("compose", lambda: f"Hello, {name}!")
    if name == "Mallory":
        await ctx.step.run("refuse", _refuse)
    return out


def _refuse():
    raise ValueError("Mallory is refused")


@app.function(id="daily", trigger=durably.on_cron("0 9 * * *", tz="Europe/Berlin"))
async def daily(ctx):
    return "ok"
