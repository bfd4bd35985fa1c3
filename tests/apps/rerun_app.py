"""The app of the dashboard's rerun and bulk-cancel browser tests: a three-step function whose
first step returns a fresh value (kept when the step replays from the memo), and a function
that parks for an hour (its runs stay unfinished, to be cancelled)."""

import uuid

import durably

app = durably.App("rerun-dash")


@app.function(id="steps3", trigger=durably.on_event("steps3"), retries=0)
async def steps3(ctx):
    stamp = await ctx.step.run("stamp", lambda: uuid.uuid4().hex)
    seen = await ctx.step.run("read", lambda: ctx.event.data.get("n"))
    fresh = await ctx.step.run("finish", lambda: uuid.uuid4().hex)
    return {"stamp": stamp, "seen": seen, "fresh": fresh}


@app.function(id="parked", trigger=durably.on_event("parked"))
async def parked(ctx):
    await ctx.step.sleep("nap", "1h")
